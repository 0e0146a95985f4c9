// Package pull is `stackblaze db pull NAME LOCAL_URL`: a database's data into a PostgreSQL on
// this machine. The steps are database.Pull's; the command validates, asks and renders.
package pull

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

// Options are the inputs of pull.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name, URL  string
	Clean, Yes bool
}

// NewCmdPull builds the command.
func NewCmdPull(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "pull NAME LOCAL_URL",
		Short: "Copy a database's data into a PostgreSQL on this machine",
		Long: strings.TrimSpace(`
Copy the application database of NAME into the PostgreSQL database LOCAL_URL
(postgres://USER:PASSWORD@HOST:PORT/DATABASE) on this machine. The dump is made in NAME's pod with
the server's own pg_dump and streamed here; this machine's pg_restore restores it in one
transaction when it is of the server's major or newer, otherwise it is plain SQL for this
machine's psql (the settings an older server does not know are left out). The objects belong to
LOCAL_URL's user. The password in LOCAL_URL reaches the local tools in their environment, never on
a command line. The local database must be empty, unless --clean (it asks; --yes in CI).`),
		Example: "stackblaze db pull shop postgres://dev:dev@localhost:5432/shop_dev",
		Args:    cmdutil.TwoArgs("NAME and LOCAL_URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name, opts.URL = args[0], args[1]
			if err := database.ValidateName(opts.Name); err != nil {
				return cmdutil.UsageErrorf("%v", err)
			}
			l, err := database.ParseMachineURL(opts.URL)
			if err != nil {
				return cmdutil.UsageErrorf("%v", err)
			}
			opts.Yes = cmdutil.AssumeYes(f, opts.Yes)
			if opts.Clean {
				if err := confirmation(l.Display).Refuse(opts.IO, opts.Yes); err != nil {
					return err
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts, l.Display)
		},
	}
	cmd.Flags().BoolVar(&opts.Clean, "clean", false, "replace the local database's objects of the same names (asks first)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask before --clean")
	return cmd
}

func confirmation(target string) cmdutil.Confirmation {
	return cmdutil.Confirmation{Action: "replace the objects of " + target, Effect: "--clean",
		Hint: "add --yes to replace them", Declined: "nothing pulled: no confirmation"}
}

func run(ctx context.Context, o *Options, display string) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	if o.Clean {
		if err := confirmation(display).Ask(o.IO, o.Yes, fmt.Sprintf("Replace the objects of %s that %s also has?", display, o.Name)); err != nil {
			return err
		}
	}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	res, err := database.Pull(ctx, c, o.Name, o.URL, database.MoveOptions{Clean: o.Clean, Progress: prog, Now: o.Now})
	prog.Stop()
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	fmt.Fprintf(o.IO.Out, "Pulled %s into %s: %d objects in %.1f s (%s format)\n", res.From, res.To, res.Objects, res.Seconds, res.Format)
	return nil
}
