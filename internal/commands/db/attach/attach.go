// Package attach is `stackblaze db attach NAME --to WORKLOAD`: DATABASE_URL from the database's
// Secret on every container of a Deployment or StatefulSet.
package attach

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

// Options are the inputs of attach.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)

	Name      string
	To        string
	Workload  database.WorkloadRef
	Env       string
	Overwrite bool
}

// NewCmdAttach builds the command.
func NewCmdAttach(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube}
	cmd := &cobra.Command{
		Use:   "attach NAME --to WORKLOAD",
		Short: "Give a Deployment or StatefulSet the database's DATABASE_URL",
		Long: strings.TrimSpace(`
Set DATABASE_URL (or the variable named by --env) on every container of a workload's pod template,
from the database's credentials Secret (valueFrom.secretKeyRef: the connection string never
appears in the workload). The change rolls the workload. The attachment is recorded on the
workload (annotation stackblaze.io/attached-databases, label stackblaze.io/attached-NAME), so that
rotate-credentials restarts it and status lists it.

WORKLOAD is deployment/NAME, statefulset/NAME, or a bare NAME for a Deployment.

Attaching again changes nothing, so attach is safe in every deploy. When a container already sets
the variable from something else (a literal value, another Secret), attach refuses (exit code 6)
unless --overwrite.`),
		Example: `stackblaze db attach mydb --to deployment/web
stackblaze db attach mydb --to worker --env PRIMARY_DATABASE_URL
stackblaze db attach mydb --to statefulset/queue --overwrite`,
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if err := cmdutil.ValidateWorkload(opts.To, opts.Env, "--to"); err != nil {
				return err
			}
			opts.Workload, _ = database.ParseWorkload(opts.To)
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.To, "to", "", "the workload: deployment/NAME, statefulset/NAME or NAME (a Deployment)")
	_ = cmd.RegisterFlagCompletionFunc("to", cmdutil.CompleteWorkloads(f))
	cmd.Flags().StringVar(&opts.Env, "env", database.DefaultEnv, "the environment variable to set")
	cmd.Flags().BoolVar(&opts.Overwrite, "overwrite", false, "replace the variable when something else sets it")
	return cmd
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	if err := database.Exists(ctx, c.Clientset, c.Namespace, o.Name); err != nil {
		return cmdutil.KubeError(err, cmdutil.ScopeOf(c, o.Name))
	}
	res, err := database.Attach(ctx, c.Clientset, c.Namespace, o.Name, o.Workload, o.Env, o.Overwrite)
	if err != nil {
		return cmdutil.WorkloadError(err, c, o.Name)
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	if !res.Changed {
		fmt.Fprintf(o.IO.Out, "%s already attached to %s as %s; nothing changed.\n", o.Name, o.Workload, o.Env)
		return nil
	}
	fmt.Fprintf(o.IO.Out, "%s attached to %s: %s from Secret %s (key %s) on %s.\n",
		o.Name, o.Workload, o.Env, res.Secret, database.URLKey, plural(res.Containers, "container"))
	if len(res.Replaced) > 0 {
		fmt.Fprintf(o.IO.Out, "Replaced the previous %s of %s.\n", o.Env, strings.Join(res.Replaced, ", "))
	}
	fmt.Fprintf(o.IO.Out, "The workload rolls out its pods with the new variable.\n")
	return nil
}

func plural(names []string, noun string) string {
	if len(names) == 1 {
		return noun + " " + names[0]
	}
	return fmt.Sprintf("%d %ss (%s)", len(names), noun, strings.Join(names, ", "))
}
