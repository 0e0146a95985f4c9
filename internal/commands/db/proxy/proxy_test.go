package proxy

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
)

// --timeout 0 means no deadline, as in the other commands that wait; a database that does not
// answer within --timeout exits 7 (ExitTimeout), as run, connect and migrate do.
func TestProxyTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		timeout      time.Duration
		wantDeadline bool
		hang         bool // the database never answers
		wantCode     int
	}{
		{0, false, false, cmdutil.ExitError},
		{-time.Second, false, false, cmdutil.ExitError},
		{30 * time.Second, true, false, cmdutil.ExitError},
		{50 * time.Millisecond, true, true, cmdutil.ExitTimeout},
	} {
		labels := database.Labels("mydb")
		labels["statefulset.kubernetes.io/pod-name"] = database.PodName("mydb")
		cs := fake.NewClientset(
			&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "mydb", Namespace: "shop", Labels: database.Labels("mydb")}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: database.CredentialsSecretName("mydb"), Namespace: "shop"},
				Data: map[string][]byte{"username": []byte("mydb"), "password": []byte("pw"), "database": []byte("mydb")}},
			// Not ready: the tunnel opens without a port-forward.
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: database.PodName("mydb"), Namespace: "shop", Labels: labels},
				Status: corev1.PodStatus{Phase: corev1.PodPending}},
		)
		e := cmdtest.New(t, false, cs, "shop")
		kc := func() (*kube.Client, error) {
			c, err := e.F.Kube()
			if c != nil {
				c.REST = &rest.Config{Host: "https://127.0.0.1:1"}
			}
			return c, err
		}
		probe := &cmdtest.WaitProbe{Hang: tc.hang}
		err := runProxy(context.Background(), &Options{
			IO: e.F.IO, Kube: kc, Now: e.F.Now, Name: "mydb", Timeout: tc.timeout,
			Logf:      func(string, ...any) {},
			Ready:     func(Result) { t.Error("the proxy is ready without a database") },
			WaitReady: probe.WaitReady,
		})
		probe.Check(t, "--timeout "+tc.timeout.String(), tc.wantDeadline, err)
		if code := cmdutil.ExitCode(err); code != tc.wantCode {
			t.Errorf("--timeout %s: exit %d (%v), want %d", tc.timeout, code, err, tc.wantCode)
		}
	}
}
