package cmdutil

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// LockRequest is one of a database's locks (a kube.Lock), as a command takes it.
type LockRequest struct {
	// Operation names the lease (database.LockName): "migrate", "rotate".
	Operation string
	// Noun is what the lock guards, in the messages: "migration" ("the migration lock", "another
	// migration of NAME is running").
	Noun string
	// Duration is the lease's (--lease-duration).
	Duration time.Duration
	// Wait is how long to wait for a holder (--lock-timeout; 0 with --no-wait).
	Wait time.Duration
	// Hint is the hint of the error when the lock stays held.
	Hint string
}

// Lock is a database's lock held by a command. Release it when the command is done.
type Lock struct {
	lock *kube.Lock
	ctx  context.Context
}

// AcquireLock takes the lock of database name for r. While it waits for another holder it shows
// "Waiting up to ... for the NOUN lock: held by ..."; once it holds the lock it prints "✔ NOUN lock
// acquired (lease ...)". A lock that stays held fails with ExitLockHeld and r.Hint. The lock is
// released on the context that ctx would have been without its cancellation (a Ctrl-C still frees
// it).
func AcquireLock(ctx context.Context, prog *output.Progress, c *kube.Client, name string, r LockRequest) (*Lock, error) {
	lease := database.LockName(name, r.Operation)
	// A Lease of that name that is not the database's is never taken over.
	if _, err := database.Guard(ctx, c.Clientset, c.Namespace, name, []database.ObjectRef{{Kind: "Lease", Name: lease}}); err != nil {
		prog.Stop()
		return nil, KubeError(err, ScopeOf(c, name))
	}
	l, err := kube.AcquireLock(ctx, c.Clientset, c.Namespace, lease, database.Labels(name), kube.LockOptions{
		Duration: r.Duration,
		Wait:     r.Wait,
		OnWait: func(holder string, since time.Time) {
			prog.Start("Waiting up to %s for the %s lock: held by %s since %s", r.Wait, r.Noun, holder, since.UTC().Format(time.RFC3339))
		},
	})
	var held *kube.LockHeldError
	if errors.As(err, &held) {
		prog.Stop()
		return nil, Errorf(ExitLockHeld, "another %s of %s is running: %s holds the lock since %s",
			r.Noun, name, held.Holder, held.Since.UTC().Format(time.RFC3339)).WithHint("%s", r.Hint)
	}
	if err != nil {
		prog.Stop()
		return nil, KubeError(err, ScopeOf(c, name))
	}
	prog.Done("%s lock acquired (lease %s)", capitalize(r.Noun), lease)
	return &Lock{lock: l, ctx: context.WithoutCancel(ctx)}, nil
}

// Lost is closed when another holder took the lock (ours expired). A nil Lock is never lost.
func (l *Lock) Lost() <-chan struct{} {
	if l == nil || l.lock == nil {
		return nil
	}
	return l.lock.Lost()
}

// Release frees the lock for the next run at once, giving the cluster up to 10s to hear it. It
// may be called more than once, and on a nil Lock (none taken): only the first call does anything.
func (l *Lock) Release() {
	if l == nil || l.lock == nil {
		return
	}
	ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
	defer cancel()
	_ = l.lock.Release(ctx)
	l.lock = nil
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
