// Package run is `stackblaze db run NAME -- CMD`: a command run with DATABASE_URL pointing at a
// tunnel to the database. `db migrate` is the same mechanism plus a lock and a summary; both use
// cmdutil.Connect and Session.Exec.
package run

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of run.
type Options struct {
	IO         *output.IOStreams
	Kube       func() (*kube.Client, error)
	OpenTunnel cmdutil.TunnelOpener
	Now        func() time.Time
	Config     func() *cmdutil.Config

	Name    string
	Command []string
	Timeout time.Duration
}

// NewCmdRun builds the command.
func NewCmdRun(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, OpenTunnel: f.OpenTunnel, Now: f.Now, Config: func() *cmdutil.Config { return f.Config }}
	cmd := &cobra.Command{
		Use:   "run [NAME] -- CMD [ARGS...]",
		Short: "Run a command with DATABASE_URL pointing at a tunnel to the database",
		Long: `Run a command with DATABASE_URL, PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE pointing at
a port-forward tunnel to the database on 127.0.0.1. The command's input and output pass through
untouched, Ctrl-C and SIGTERM are forwarded to it, and stackblaze exits with its exit code.

NAME may be left out when the configuration names a database (STACKBLAZE_DATABASE, or
"database:" in .stackblaze.yaml) or when the namespace holds exactly one.`,
		Example:           "stackblaze db run mydb -- psql -c 'select 1'\nstackblaze db run mydb -- ./scripts/seed.sh",
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, command, err := cmdutil.SplitArgs(cmd, args)
			if err != nil {
				return err
			}
			opts.Name, opts.Command = name, command
			if runF != nil {
				return runF(opts)
			}
			s, err := cmdutil.Connect(cmd.Context(), cmdutil.ConnectOptions{IO: opts.IO, Kube: opts.Kube, OpenTunnel: opts.OpenTunnel, Now: opts.Now, Config: opts.Config(), Name: opts.Name, Timeout: opts.Timeout})
			if err != nil {
				return err
			}
			defer s.Close()
			res := s.Exec(opts.Command)
			s.Close()
			return res.Finish(opts.IO)
		},
	}
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 2*time.Minute, "how long to wait for the tunnel and the database")
	return cmd
}
