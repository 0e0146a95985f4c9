package cmdutil

import (
	"context"
	"fmt"
	"time"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/pg"
)

// ReadyTunnel is a tunnel to a database that OpenReadyTunnel opens, and the login that proves
// that PostgreSQL answers through it.
type ReadyTunnel struct {
	Progress *output.Progress
	// Scope is where errors are reported; Scope.Database names the database in them.
	Scope Scope
	// Target is what the tunnel goes to, as "Opening a tunnel to TARGET" says (the pod, or the
	// database).
	Target string
	// Open opens the tunnel. The tunnel lives until it is closed, not until ctx ends.
	Open func() (Tunnel, error)
	// Login is the role that must be able to log in through the tunnel.
	Login database.Credentials
	// Timeout bounds the wait for the login, and its running out is ExitTimeout. 0: ctx alone
	// bounds it, and its running out is ExitError.
	Timeout time.Duration
	// Steps reports the steps after "Opening a tunnel": "✔ Tunnel open on ADDR", "Waiting for the
	// database to accept connections", "✔ Database accepting connections", and "✔ Tunnel closed"
	// when the database does not answer. Without it, the "Opening a tunnel" spinner keeps
	// running for the caller's next line.
	Steps bool
	// Hint is added to the hint of the error when the database does not answer.
	Hint string
	// WaitReady waits until PostgreSQL accepts a login (nil: pg.WaitReady; tests replace it).
	WaitReady func(ctx context.Context, connString string) error
}

// OpenReadyTunnel opens a tunnel to a database and waits until PostgreSQL accepts r.Login through
// it (pg.WaitReady). On an error the tunnel is closed and the spinner stopped.
func OpenReadyTunnel(ctx context.Context, r ReadyTunnel) (Tunnel, error) {
	wctx, cancel := TimeoutContext(ctx, r.Timeout)
	defer cancel()
	prog := r.Progress
	prog.Start("Opening a tunnel to %s", r.Target)
	t, err := r.Open()
	if err != nil {
		prog.Stop()
		return nil, KubeError(fmt.Errorf("open a tunnel to %s: %w", r.Target, err), r.Scope)
	}
	if r.Steps {
		prog.Done("Tunnel open on %s", t.Addr())
		prog.Start("Waiting for the database to accept connections")
	}
	waitReady := r.WaitReady
	if waitReady == nil {
		waitReady = pg.WaitReady
	}
	if err := waitReady(wctx, database.LocalURL(r.Login, t.Port())); err != nil {
		prog.Stop()
		_ = t.Close()
		if r.Steps {
			prog.Done("Tunnel closed")
		}
		name := r.Scope.Database
		return nil, AsTimeout((&Error{Code: ExitError, Err: fmt.Errorf("database %s: %w", name, err)}).
			WithHint("check it with `stackblaze db status %s`%s", name, r.Hint), ctx, wctx)
	}
	if r.Steps {
		prog.Done("Database accepting connections")
	}
	return t, nil
}
