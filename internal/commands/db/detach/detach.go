// Package detach is `stackblaze db detach NAME --from WORKLOAD`: undo attach.
package detach

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of detach.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)

	Name     string
	From     string
	Workload database.WorkloadRef
	Env      string
}

// NewCmdDetach builds the command.
func NewCmdDetach(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube}
	cmd := &cobra.Command{
		Use:   "detach NAME --from WORKLOAD",
		Short: "Remove the database's variables from a Deployment or StatefulSet",
		Long: strings.TrimSpace(`
Remove exactly what attach added: the variables that come from the database's credentials Secret
(every one attach recorded for NAME, or only --env), and the record of the attachment. A variable
of the same name from another source is left alone. Detaching what is not attached changes
nothing.`),
		Example:           "stackblaze db detach mydb --from deployment/web\nstackblaze db detach mydb --from worker --env PRIMARY_DATABASE_URL",
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if err := cmdutil.ValidateWorkload(opts.From, opts.Env, "--from"); err != nil {
				return err
			}
			opts.Workload, _ = database.ParseWorkload(opts.From)
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.From, "from", "", "the workload: deployment/NAME, statefulset/NAME or NAME (a Deployment)")
	_ = cmd.RegisterFlagCompletionFunc("from", cmdutil.CompleteWorkloads(f))
	cmd.Flags().StringVar(&opts.Env, "env", "", "only this variable (default: every variable attach set for NAME)")
	return cmd
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	// No check that the database exists: detaching a deleted database must still work.
	res, err := database.Detach(ctx, c.Clientset, c.Namespace, o.Name, o.Workload, o.Env)
	if err != nil {
		return cmdutil.WorkloadError(err, c, o.Name)
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	if !res.Changed {
		fmt.Fprintf(o.IO.Out, "%s is not attached to %s; nothing changed.\n", o.Name, o.Workload)
		return nil
	}
	fmt.Fprintf(o.IO.Out, "%s detached from %s: removed %s.\n", o.Name, o.Workload, strings.Join(res.Env, ", "))
	return nil
}
