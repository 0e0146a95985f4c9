// Package migrate is `stackblaze db migrate [NAME] -- CMD`: run a migration tool through a tunnel,
// one run per database at a time, and say what it applied.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/pg"
)

// Options are the inputs of migrate.
type Options struct {
	IO         *output.IOStreams
	Kube       func() (*kube.Client, error)
	OpenTunnel cmdutil.TunnelOpener
	Now        func() time.Time
	Config     func() *cmdutil.Config

	Name          string
	Command       []string
	LockTimeout   time.Duration
	NoWait        bool
	LeaseDuration time.Duration
	Timeout       time.Duration
}

// NewCmdMigrate builds the command.
func NewCmdMigrate(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, OpenTunnel: f.OpenTunnel, Now: f.Now, Config: func() *cmdutil.Config { return f.Config }}
	cmd := &cobra.Command{
		Use:   "migrate [NAME] -- CMD [ARGS...]",
		Short: "Run a migration command through a tunnel to the database",
		Long: `Run a migration command (prisma, django, goose, alembic, knex, node-pg-migrate, flyway...) with
DATABASE_URL, PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE pointing at a port-forward tunnel to
the database on 127.0.0.1. The database is never exposed outside the cluster.

Only one migrate runs per database at a time: the run holds a Lease in the namespace and renews it
while the command runs. A second run waits up to --lock-timeout and says who holds the lock;
--no-wait fails at once (exit code 8). A run that crashed stops renewing, and its lease expires.

The command's input and output pass through untouched; stackblaze's own lines go to stderr.
Ctrl-C and SIGTERM are forwarded to the command, and stackblaze exits with its exit code (128+N
when it died of signal N). When the database has a migration table stackblaze recognises, it says
how many migrations it found and which ones this run applied.`,
		Example: `stackblaze db migrate mydb -- npx prisma migrate deploy
stackblaze db migrate mydb -- python manage.py migrate
stackblaze db migrate -- goose -dir migrations postgres up     # NAME from STACKBLAZE_DATABASE or the only database
stackblaze db migrate mydb --no-wait -- npx knex migrate:latest`,
		Args:              cobra.ArbitraryArgs,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, command, err := cmdutil.SplitArgs(cmd, args)
			if err != nil {
				return err
			}
			opts.Name, opts.Command = name, command
			if opts.LockTimeout < 0 {
				return cmdutil.UsageErrorf("--lock-timeout must not be negative")
			}
			if opts.LeaseDuration < 3*time.Second {
				return cmdutil.UsageErrorf("--lease-duration must be at least 3s, got %s", opts.LeaseDuration)
			}
			if runF != nil {
				return runF(opts)
			}
			return runMigrate(cmd.Context(), opts)
		},
	}
	cmd.Flags().DurationVar(&opts.LockTimeout, "lock-timeout", 10*time.Minute, "how long to wait for another migration of the database to finish")
	cmd.Flags().BoolVar(&opts.NoWait, "no-wait", false, "fail at once (exit code 8) when another migration holds the lock")
	cmd.Flags().DurationVar(&opts.LeaseDuration, "lease-duration", 15*time.Second, "how long the lock outlives a run that stopped renewing it (crashed)")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 2*time.Minute, "how long to wait for the tunnel and the database")
	return cmd
}

func runMigrate(ctx context.Context, o *Options) error {
	var lock *cmdutil.Lock
	defer func() { lock.Release() }()
	s, err := cmdutil.Connect(ctx, cmdutil.ConnectOptions{
		IO: o.IO, Kube: o.Kube, OpenTunnel: o.OpenTunnel, Now: o.Now, Config: o.Config(), Name: o.Name, Timeout: o.Timeout,
		BeforeTunnel: func(ctx context.Context, c *kube.Client, name string, prog *output.Progress) error {
			l, err := acquire(ctx, c, name, o, prog)
			lock = l
			return err
		},
	})
	if err != nil {
		return err
	}
	defer s.Close()

	before, beforeErr := readMigrations(ctx, s)
	if beforeErr != nil {
		s.Progress.Warn("Could not read the migration table before the run: %v", beforeErr)
	}
	res := s.Exec(o.Command)
	select {
	case <-lock.Lost():
		s.Progress.Warn("The migration lock expired while the command ran and another run took it")
	default:
	}
	if beforeErr == nil {
		after, err := readMigrations(context.WithoutCancel(ctx), s)
		switch {
		case err != nil:
			s.Progress.Warn("Could not read the migration table after the run: %v", err)
		default:
			res.Migrations = pg.Summarize(before, after)
			report(s.Progress, res.Migrations)
		}
	}
	s.Close()
	lock.Release()
	return res.Finish(o.IO)
}

func acquire(ctx context.Context, c *kube.Client, name string, o *Options, prog *output.Progress) (*cmdutil.Lock, error) {
	r := cmdutil.LockRequest{Operation: "migrate", Noun: "migration", Duration: o.LeaseDuration, Wait: o.LockTimeout,
		Hint: fmt.Sprintf("gave up after --lock-timeout %s; a crashed run's lock expires %s after its last renewal", o.LockTimeout, o.LeaseDuration)}
	if o.NoWait {
		r.Wait = 0
		r.Hint = "wait for it to finish, or run without --no-wait to queue behind it (--lock-timeout)"
	}
	return cmdutil.AcquireLock(ctx, prog, c, name, r)
}

func readMigrations(ctx context.Context, s *cmdutil.Session) (*pg.MigrationState, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pg.Connect(ctx, s.Login())
	if err != nil {
		return nil, errors.New("log in through the tunnel failed")
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return pg.ReadMigrations(ctx, conn)
}

func report(prog *output.Progress, m *pg.MigrationSummary) {
	if m == nil {
		return
	}
	if m.VersionOnly {
		if len(m.AppliedNow) == 0 {
			prog.Done("%s: at version %s, nothing applied by this run", m.Tool, m.Version)
		} else {
			prev := m.Previous
			if prev == "" {
				prev = "none"
			}
			prog.Done("%s: now at version %s (was %s)", m.Tool, m.Version, prev)
		}
		return
	}
	noun := "migrations"
	if m.Found == 1 {
		noun = "migration"
	}
	if len(m.AppliedNow) == 0 {
		prog.Done("%d %s found (%s), none applied by this run: already up to date", m.Found, noun, m.Tool)
		return
	}
	names := make([]string, len(m.AppliedNow))
	for i, a := range m.AppliedNow {
		names[i] = a.ID
	}
	prog.Done("%d %s found (%s), %d applied by this run: %s", m.Found, noun, m.Tool, len(m.AppliedNow), strings.Join(names, ", "))
}
