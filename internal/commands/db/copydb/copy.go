// Package copydb is `stackblaze db copy SOURCE TARGET`: one database's data into another's,
// inside the cluster. The steps are database.Copy's; the command validates, asks and renders.
package copydb

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of copy.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Source, Target string
	Clean, Yes     bool
}

// NewCmdCopy builds the command.
func NewCmdCopy(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "copy SOURCE TARGET",
		Short: "Copy one database's data into another, inside the cluster",
		Long: strings.TrimSpace(`
Copy the application database of SOURCE into TARGET's, both databases of this namespace: TARGET's
pod dumps SOURCE through its Service with its own pg_dump and restores it with pg_restore in one
transaction, every object owned by TARGET's application role. The data never leaves the cluster.
TARGET runs the same PostgreSQL major as SOURCE or a newer one (a copy is also a way to a newer
major). TARGET must be empty, unless --clean, which replaces the objects of the same names (it
asks; --yes in CI). Create TARGET first with db create.`),
		Example:           "stackblaze db copy shop shop-staging --clean --yes",
		Args:              cmdutil.TwoArgs("SOURCE and TARGET"),
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Source, opts.Target = args[0], args[1]
			for _, n := range args {
				if err := database.ValidateName(n); err != nil {
					return cmdutil.UsageErrorf("%v", err)
				}
			}
			opts.Yes = cmdutil.AssumeYes(f, opts.Yes)
			if opts.Clean {
				if err := confirmation(opts.Target).Refuse(opts.IO, opts.Yes); err != nil {
					return err
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Clean, "clean", false, "replace TARGET's objects of the same names (asks first)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask before --clean")
	return cmd
}

func confirmation(target string) cmdutil.Confirmation {
	return cmdutil.Confirmation{Action: "replace the objects of database " + target, Effect: "--clean",
		Hint: "add --yes to replace them", Declined: "nothing copied: no confirmation"}
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Target)
	if o.Clean {
		if err := confirmation(o.Target).Ask(o.IO, o.Yes, fmt.Sprintf("Replace the objects of %s that %s also has?", o.Target, o.Source)); err != nil {
			return err
		}
	}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	res, err := database.Copy(ctx, c, o.Source, o.Target, database.MoveOptions{Clean: o.Clean, Progress: prog, Now: o.Now})
	prog.Stop()
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	fmt.Fprintf(o.IO.Out, "Copied %s into %s: %d objects in %.1f s\n", res.From, res.To, res.Objects, res.Seconds)
	return nil
}
