package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// LockHeldError says who holds a database's lock.
type LockHeldError struct {
	Lease    string
	Holder   string
	Since    time.Time
	Expires  time.Time
	TimedOut bool
}

func (e *LockHeldError) Error() string {
	msg := fmt.Sprintf("lock %s is held by %s (since %s)", e.Lease, e.Holder, e.Since.UTC().Format(time.RFC3339))
	if e.TimedOut {
		msg += "; gave up waiting"
	}
	return msg
}

// Lock is a held coordination.k8s.io/v1 Lease: a lock in the cluster that every machine running
// the tool sees. It is renewed in the background until Release; a holder that dies stops renewing
// and the lease expires after its duration, so a crashed run never blocks the next one for long.
type Lock struct {
	cs       kubernetes.Interface
	ns, name string
	identity string
	duration time.Duration
	cancel   context.CancelFunc
	done     chan struct{}
	lost     chan struct{}
}

// LockOptions configures AcquireLock.
type LockOptions struct {
	// Identity names the holder in the lease, for the error a waiting run prints.
	Identity string
	// Duration is how long the lease lasts without renewal (default 15s).
	Duration time.Duration
	// Wait is how long to wait for a held lock; 0 fails at once.
	Wait time.Duration
	// OnWait is called once when the lock is held by someone else and we start waiting.
	OnWait func(holder string, since time.Time)
}

// DefaultIdentity names this process: user@host (pid N), plus the CI job when there is one.
func DefaultIdentity() string {
	host, _ := os.Hostname()
	user := os.Getenv("USER")
	if user == "" {
		user = "unknown"
	}
	id := fmt.Sprintf("%s@%s (pid %d)", user, host, os.Getpid())
	for _, env := range []string{"GITHUB_RUN_ID", "CI_JOB_ID", "BUILD_ID"} {
		if v := os.Getenv(env); v != "" {
			id += fmt.Sprintf(" %s=%s", env, v)
			break
		}
	}
	return id
}

// AcquireLock takes the lease ns/name, waiting for a holder to release it or for its lease to
// expire (by watching the lease, never by polling) up to o.Wait. It returns a *LockHeldError when
// the lock stays held.
func AcquireLock(ctx context.Context, cs kubernetes.Interface, ns, name string, labels map[string]string, o LockOptions) (*Lock, error) {
	if o.Duration <= 0 {
		o.Duration = 15 * time.Second
	}
	if o.Identity == "" {
		o.Identity = DefaultIdentity()
	}
	deadline := time.Now().Add(o.Wait)
	leases := cs.CoordinationV1().Leases(ns)
	waited := false
	for {
		now := time.Now()
		cur, err := leases.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			lease := &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
				Spec:       holderSpec(o.Identity, o.Duration, now, now),
			}
			if _, err := leases.Create(ctx, lease, metav1.CreateOptions{}); err == nil {
				return startLock(cs, ns, name, o), nil
			} else if !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("create lease %s: %w", name, err)
			}
			continue // someone else created it first: look again
		case err != nil:
			return nil, fmt.Errorf("read lease %s: %w", name, err)
		}
		holder, since, expires := leaseState(cur)
		if holder == "" || !now.Before(expires) || holder == o.Identity {
			next := cur.DeepCopy()
			transitions := ptr.Deref(cur.Spec.LeaseTransitions, 0)
			if holder != o.Identity {
				transitions++
			}
			next.Spec = holderSpec(o.Identity, o.Duration, now, now)
			next.Spec.LeaseTransitions = ptr.To(transitions)
			if _, err := leases.Update(ctx, next, metav1.UpdateOptions{}); err == nil {
				return startLock(cs, ns, name, o), nil
			} else if !apierrors.IsConflict(err) {
				return nil, fmt.Errorf("take lease %s: %w", name, err)
			}
			continue // it changed under us: look again
		}
		if !now.Before(deadline) {
			return nil, &LockHeldError{Lease: name, Holder: holder, Since: since, Expires: expires, TimedOut: o.Wait > 0}
		}
		if !waited && o.OnWait != nil {
			o.OnWait(holder, since)
		}
		waited = true
		// Wait for the lease to change (released, renewed, deleted) or to expire.
		until := expires
		if deadline.Before(until) {
			until = deadline
		}
		if err := waitLeaseChange(ctx, cs, ns, name, cur.ResourceVersion, time.Until(until)); err != nil {
			return nil, err
		}
	}
}

func holderSpec(identity string, d time.Duration, acquired, renewed time.Time) coordinationv1.LeaseSpec {
	return coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(identity),
		LeaseDurationSeconds: ptr.To(int32((d + time.Second - 1) / time.Second)),
		AcquireTime:          &metav1.MicroTime{Time: acquired},
		RenewTime:            &metav1.MicroTime{Time: renewed},
	}
}

func leaseState(l *coordinationv1.Lease) (holder string, since, expires time.Time) {
	holder = ptr.Deref(l.Spec.HolderIdentity, "")
	if l.Spec.AcquireTime != nil {
		since = l.Spec.AcquireTime.Time
	}
	renew := since
	if l.Spec.RenewTime != nil {
		renew = l.Spec.RenewTime.Time
	}
	expires = renew.Add(time.Duration(ptr.Deref(l.Spec.LeaseDurationSeconds, 0)) * time.Second)
	return holder, since, expires
}

// waitLeaseChange returns when the lease changes after resourceVersion, or after d.
func waitLeaseChange(ctx context.Context, cs kubernetes.Interface, ns, name, resourceVersion string, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	w, err := cs.CoordinationV1().Leases(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
		ResourceVersion: resourceVersion,
	})
	if err != nil {
		if ctx.Err() != nil {
			return parentErr(ctx)
		}
		return fmt.Errorf("watch lease %s: %w", name, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return parentErr(ctx)
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				return nil // look again
			}
			if ev.Type == watch.Modified || ev.Type == watch.Deleted || ev.Type == watch.Added {
				return nil
			}
		}
	}
}

// parentErr reports a cancelled caller, and nil when only our own timer ran out.
func parentErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.DeadlineExceeded) {
			return cause
		}
		return nil
	}
	return ctx.Err()
}

func startLock(cs kubernetes.Interface, ns, name string, o LockOptions) *Lock {
	ctx, cancel := context.WithCancel(context.Background())
	l := &Lock{cs: cs, ns: ns, name: name, identity: o.Identity, duration: o.Duration,
		cancel: cancel, done: make(chan struct{}), lost: make(chan struct{})}
	go l.renew(ctx)
	return l
}

// renew keeps the lease fresh at a third of its duration.
func (l *Lock) renew(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.duration / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		leases := l.cs.CoordinationV1().Leases(l.ns)
		cur, err := leases.Get(ctx, l.name, metav1.GetOptions{})
		if err != nil {
			continue // a blip: the next tick tries again while the lease still has time
		}
		if ptr.Deref(cur.Spec.HolderIdentity, "") != l.identity {
			close(l.lost)
			return
		}
		cur.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		_, _ = leases.Update(ctx, cur, metav1.UpdateOptions{})
	}
}

// Lost is closed when another holder took the lease (ours had expired).
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Release stops renewing and frees the lease for the next run at once.
func (l *Lock) Release(ctx context.Context) error {
	l.cancel()
	<-l.done
	leases := l.cs.CoordinationV1().Leases(l.ns)
	cur, err := leases.Get(ctx, l.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ptr.Deref(cur.Spec.HolderIdentity, "") != l.identity {
		return nil
	}
	err = leases.Delete(ctx, l.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{
		UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}
