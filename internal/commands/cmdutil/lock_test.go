package cmdutil_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

func TestAcquireLock(t *testing.T) {
	t.Parallel()
	clock := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	req := cmdutil.LockRequest{Operation: "migrate", Noun: "migration", Duration: 15 * time.Second, Hint: "the hint"}

	t.Run("free", func(t *testing.T) {
		t.Parallel()
		var errOut bytes.Buffer
		prog := output.Test(nil, &bytes.Buffer{}, &errOut).NewProgress(clock)
		c := &kube.Client{Clientset: fake.NewClientset(), Namespace: "shop"}
		l, err := cmdutil.AcquireLock(context.Background(), prog, c, "app", req)
		if err != nil {
			t.Fatal(err)
		}
		if want := "2026-01-02T03:04:05Z ✔ Migration lock acquired (lease stackblaze-migrate-app)\n"; errOut.String() != want {
			t.Errorf("stderr %q, want %q", errOut.String(), want)
		}
		l.Release()
		l.Release() // a second call does nothing
		var none *cmdutil.Lock
		none.Release()
		if _, err := c.Clientset.CoordinationV1().Leases("shop").Get(context.Background(), "stackblaze-migrate-app", metav1.GetOptions{}); err == nil {
			t.Error("the lease is still there after Release")
		}
	})

	// A Lease of the lock's name that another tool made is never taken over, held or not.
	t.Run("foreign", func(t *testing.T) {
		t.Parallel()
		foreign := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "stackblaze-migrate-app", Namespace: "shop"}}
		prog := output.Test(nil, &bytes.Buffer{}, &bytes.Buffer{}).NewProgress(clock)
		cs := fake.NewClientset(foreign)
		_, err := cmdutil.AcquireLock(context.Background(), prog, &kube.Client{Clientset: cs, Namespace: "shop"}, "app", req)
		if code := cmdutil.ExitCode(err); code != cmdutil.ExitConflict || !strings.Contains(err.Error(), "Lease/stackblaze-migrate-app") {
			t.Fatalf("exit %d (%v), want %d naming the Lease", code, err, cmdutil.ExitConflict)
		}
		l, _ := cs.CoordinationV1().Leases("shop").Get(context.Background(), "stackblaze-migrate-app", metav1.GetOptions{})
		if l.Spec.HolderIdentity != nil {
			t.Errorf("the user's Lease was written: holder %q", *l.Spec.HolderIdentity)
		}
	})

	t.Run("held", func(t *testing.T) {
		t.Parallel()
		now := time.Now()
		held := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "stackblaze-migrate-app", Namespace: "shop", Labels: database.Labels("app")},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("someone else"), LeaseDurationSeconds: ptr.To(int32(60)),
				AcquireTime: &metav1.MicroTime{Time: now}, RenewTime: &metav1.MicroTime{Time: now}},
		}
		prog := output.Test(nil, &bytes.Buffer{}, &bytes.Buffer{}).NewProgress(clock)
		c := &kube.Client{Clientset: fake.NewClientset(held), Namespace: "shop"}
		_, err := cmdutil.AcquireLock(context.Background(), prog, c, "app", req)
		if code := cmdutil.ExitCode(err); code != cmdutil.ExitLockHeld {
			t.Fatalf("exit %d (%v), want %d", code, err, cmdutil.ExitLockHeld)
		}
		if !strings.HasPrefix(err.Error(), "another migration of app is running: someone else holds the lock since ") {
			t.Errorf("error %q", err)
		}
		if e, ok := err.(*cmdutil.Error); !ok || e.Hint != "the hint" {
			t.Errorf("error %#v does not carry the hint", err)
		}
	})
}
