// Package connect is `stackblaze db connect NAME`: psql through a tunnel.
package connect

import (
	"context"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of connect.
type Options struct {
	IO         *output.IOStreams
	Kube       func() (*kube.Client, error)
	OpenTunnel cmdutil.TunnelOpener
	Now        func() time.Time
	Config     func() *cmdutil.Config
	LookPath   func(string) (string, error)

	Name    string
	PSQL    string
	Args    []string
	Timeout time.Duration
}

// NewCmdConnect builds the command.
func NewCmdConnect(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, OpenTunnel: f.OpenTunnel, Now: f.Now, LookPath: exec.LookPath,
		Config: func() *cmdutil.Config { return f.Config }}
	cmd := &cobra.Command{
		Use:   "connect NAME [-- PSQL_ARGS...]",
		Short: "Open psql on the database through a tunnel",
		Long: `Open psql on the database as its application role, through a port-forward tunnel on 127.0.0.1.
The password reaches psql in its environment, never on its command line. Arguments after -- go to psql.`,
		Example:           "stackblaze db connect mydb\nstackblaze db connect mydb -- -c 'select now()'",
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			before := args
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				before, opts.Args = args[:dash], args[dash:]
			}
			if err := cmdutil.ExactName(cmd, before); err != nil {
				return err
			}
			opts.Name = before[0]
			if runF != nil {
				return runF(opts)
			}
			return runConnect(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.PSQL, "psql", "psql", "the psql program to run")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 2*time.Minute, "how long to wait for the tunnel and the database")
	return cmd
}

func runConnect(ctx context.Context, o *Options) error {
	psql, err := o.LookPath(o.PSQL)
	if err != nil {
		return cmdutil.Errorf(cmdutil.ExitError, "%s is not installed (or not on PATH)", o.PSQL).
			WithHint("install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client; macOS: brew install libpq),\nor use `stackblaze db proxy %s` and any client you like", o.Name)
	}
	s, err := cmdutil.Connect(ctx, cmdutil.ConnectOptions{IO: o.IO, Kube: o.Kube, OpenTunnel: o.OpenTunnel, Now: o.Now, Config: o.Config(), Name: o.Name, Timeout: o.Timeout})
	if err != nil {
		return err
	}
	defer s.Close()
	res := s.Exec(append([]string{psql}, o.Args...))
	s.Close()
	// psql is interactive: its own output is the result, there is no document to print.
	return res.Err()
}
