package run

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
)

// --timeout 0 means no deadline, as in the other commands that wait.
func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		timeout      time.Duration
		wantDeadline bool
	}{
		{0, false},
		{-time.Second, false},
		{30 * time.Second, true},
	} {
		cs := fake.NewClientset(
			&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "mydb", Namespace: "shop", Labels: database.Labels("mydb")}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: database.CredentialsSecretName("mydb"), Namespace: "shop"},
				Data: map[string][]byte{"username": []byte("mydb"), "password": []byte("pw"), "database": []byte("mydb")}},
		)
		e := cmdtest.New(t, false, cs, "shop")
		probe := &cmdtest.WaitProbe{}
		_, err := cmdutil.Connect(context.Background(), cmdutil.ConnectOptions{
			IO: e.F.IO, Kube: e.F.Kube, OpenTunnel: e.F.OpenTunnel, Now: e.F.Now, Name: "mydb", Timeout: tc.timeout,
			WaitReady: probe.WaitReady,
		})
		probe.Check(t, "--timeout "+tc.timeout.String(), tc.wantDeadline, err)
		if code := cmdutil.ExitCode(err); code != cmdutil.ExitError {
			t.Errorf("--timeout %s: exit %d (%v), want %d", tc.timeout, code, err, cmdutil.ExitError)
		}
	}
}
