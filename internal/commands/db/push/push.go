// Package push is `stackblaze db push LOCAL_URL NAME`: a PostgreSQL database of this machine into
// a database. The steps are database.Push's; the command validates, asks and renders.
package push

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

// Options are the inputs of push.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	URL, Name  string
	Clean, Yes bool
}

// NewCmdPush builds the command.
func NewCmdPush(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "push LOCAL_URL NAME",
		Short: "Copy a PostgreSQL database of this machine into a database",
		Long: strings.TrimSpace(`
Copy the PostgreSQL database LOCAL_URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE) of this
machine into NAME's application database: this machine's pg_dump (custom format, without owners
and privileges) is streamed into NAME's pod, where the server's own pg_restore restores it in one
transaction, every object owned by the application role. NAME's PostgreSQL must be of the local
pg_dump's major or newer. The password in LOCAL_URL reaches pg_dump in its environment, never on a
command line. NAME must be empty, unless --clean, which drops every object of its application
role first, in the restore's transaction (it asks; --yes in CI).`),
		Example:           "stackblaze db push postgres://dev:dev@localhost:5432/shop_dev shop-staging",
		Args:              cmdutil.TwoArgs("LOCAL_URL and NAME"),
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.URL, opts.Name = args[0], args[1]
			if _, err := database.ParseMachineURL(opts.URL); err != nil {
				return cmdutil.UsageErrorf("%v", err)
			}
			if err := database.ValidateName(opts.Name); err != nil {
				return cmdutil.UsageErrorf("%v", err)
			}
			opts.Yes = cmdutil.AssumeYes(f, opts.Yes)
			if opts.Clean {
				if err := confirmation(opts.Name).Refuse(opts.IO, opts.Yes); err != nil {
					return err
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Clean, "clean", false, "drop every object of NAME's application role first (asks first)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask before --clean")
	return cmd
}

func confirmation(name string) cmdutil.Confirmation {
	return cmdutil.Confirmation{Action: "drop every object of database " + name, Effect: "--clean",
		Hint: "add --yes to drop them", Declined: "nothing pushed: no confirmation"}
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	if o.Clean {
		if err := confirmation(o.Name).Ask(o.IO, o.Yes, fmt.Sprintf("Drop every object of %s's application role before the push?", o.Name)); err != nil {
			return err
		}
	}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	res, err := database.Push(ctx, c, o.URL, o.Name, database.MoveOptions{Clean: o.Clean, Progress: prog, Now: o.Now})
	prog.Stop()
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	fmt.Fprintf(o.IO.Out, "Pushed %s into %s: %d objects in %.1f s\n", res.From, res.To, res.Objects, res.Seconds)
	return nil
}
