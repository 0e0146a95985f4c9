package testbed_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// postgresStatefulSet is the smallest database: one replica of our database image, as uid 999
// (the image refuses root) with fsGroup 999 on its volume, a 1Gi claim, and the superuser
// password from a Secret.
func postgresStatefulSet(t *testing.T, env *testbed.Env, ns, name, password string) {
	t.Helper()
	ctx := testbed.Context(t, 30*time.Second)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-pw"},
		StringData: map[string]string{"password": password},
	}
	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": name}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To[int32](1),
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{
					RunAsUser: ptr.To[int64](999), RunAsGroup: ptr.To[int64](999), FSGroup: ptr.To[int64](999),
				}, Containers: []corev1.Container{{
					Name:  "postgres",
					Image: database.DefaultImageRepository + ":17",
					Ports: []corev1.ContainerPort{{ContainerPort: 5432}},
					// Ready once the server answers (the image initialises the data directory first).
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"pg_isready", "-h", "127.0.0.1", "-q"}}},
						PeriodSeconds: 1,
					},
					Env: []corev1.EnvVar{
						{Name: "PGDATA", Value: "/var/lib/postgresql/data/pgdata"},
						{Name: "POSTGRES_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
							LocalObjectReference: corev1.LocalObjectReference{Name: name + "-pw"}, Key: "password"}}},
					},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}},
				}}},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceStorage: resource.MustParse("1Gi")}},
				},
			}},
		},
	}
	if _, err := env.Client.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitReady(t *testing.T, env *testbed.Env, ns, pod string, not string) *corev1.Pod {
	t.Helper()
	ctx := testbed.Context(t, 2*time.Minute)
	p, err := testbed.WaitPod(ctx, env.Client, ns, pod, func(p *corev1.Pod) bool {
		return kube.PodReady(p) && string(p.UID) != not
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func connect(ctx context.Context, t *testing.T, env *testbed.Env, ns, pod, password string) (*pgx.Conn, error) {
	t.Helper()
	fctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, err := testbed.PortForward(fctx, env.REST, ns, pod, 5432)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(addr, ":")
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable", host, port))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = password
	return pgx.ConnectConfig(ctx, cfg)
}

func mustConnect(t *testing.T, env *testbed.Env, ns, pod, password string) *pgx.Conn {
	t.Helper()
	ctx := testbed.Context(t, 30*time.Second)
	conn, err := connect(ctx, t, env, ns, pod, password)
	if err != nil {
		t.Fatalf("log in through port-forward: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func rows(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	ctx := testbed.Context(t, 10*time.Second)
	r, err := conn.Query(ctx, "SELECT v FROM marker ORDER BY v")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(r, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestE2EStatefulSetRunsRealPostgres(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	const password = "s3cret-from-the-secret"
	postgresStatefulSet(t, env, ns, "db", password)
	first := waitReady(t, env, ns, "db-0", "")

	// Authentication is real: a wrong password is refused.
	ctx := testbed.Context(t, 30*time.Second)
	if c, err := connect(ctx, t, env, ns, "db-0", "wrong-password"); err == nil {
		c.Close(ctx)
		t.Fatal("a wrong password logged in")
	} else {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Fatalf("wrong password: want SQLSTATE 28P01 (invalid_password), got %v", err)
		}
	}

	conn := mustConnect(t, env, ns, "db-0", password)
	if _, err := conn.Exec(ctx, "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('row-1')"); err != nil {
		t.Fatal(err)
	}
	if got := rows(t, conn); len(got) != 1 || got[0] != "row-1" {
		t.Fatalf("rows = %v", got)
	}
	conn.Close(ctx)

	t.Run("kubectl exec runs pg_dump against the pod's own server", func(t *testing.T) {
		ctx := testbed.Context(t, 30*time.Second)
		cmd := exec.CommandContext(ctx, env.Kubectl(), "--kubeconfig", env.Kubeconfig, "-n", ns,
			"exec", "db-0", "--", "pg_dump", "--data-only", "-t", "marker", "postgres")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("kubectl exec pg_dump: %v: %s", err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "row-1") {
			t.Fatalf("the dump lacks the row:\n%s", stdout.String())
		}
	})

	t.Run("a replaced pod finds the data", func(t *testing.T) {
		ctx := testbed.Context(t, 30*time.Second)
		if err := env.Client.CoreV1().Pods(ns).Delete(ctx, "db-0", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		second := waitReady(t, env, ns, "db-0", string(first.UID))
		if second.UID == first.UID {
			t.Fatal("the pod was not replaced")
		}
		conn := mustConnect(t, env, ns, "db-0", password)
		if got := rows(t, conn); len(got) != 1 || got[0] != "row-1" {
			t.Fatalf("after the pod was replaced, rows = %v", got)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO marker VALUES ('row-2')"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("scale to 0 and back keeps the data", func(t *testing.T) {
		ctx := testbed.Context(t, 2*time.Minute)
		before, err := env.Client.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		scale := func(n int32) {
			// A merge patch of the scale subresource: no read-modify-write race with the
			// StatefulSet controller's own status updates.
			patch := []byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, n))
			if _, err := env.Client.AppsV1().StatefulSets(ns).Patch(ctx, "db", types.MergePatchType, patch, metav1.PatchOptions{}, "scale"); err != nil {
				t.Fatal(err)
			}
		}
		scale(0)
		if _, err := testbed.WaitPod(ctx, env.Client, ns, "db-0", func(p *corev1.Pod) bool { return p == nil }); err != nil {
			t.Fatal(err)
		}
		scale(1)
		waitReady(t, env, ns, "db-0", string(before.UID))
		conn := mustConnect(t, env, ns, "db-0", password)
		if got := rows(t, conn); strings.Join(got, ",") != "row-1,row-2" {
			t.Fatalf("after scale 0 and back, rows = %v", got)
		}
	})
}

func TestE2ETwoNamespacesGetSeparateServers(t *testing.T) {
	env := testbed.Require(t)
	nsA, nsB := env.Namespace(t, nil), env.Namespace(t, nil)
	postgresStatefulSet(t, env, nsA, "db", "password-a")
	postgresStatefulSet(t, env, nsB, "db", "password-b")
	a := waitReady(t, env, nsA, "db-0", "")
	b := waitReady(t, env, nsB, "db-0", "")
	if a.Status.PodIP == "" || a.Status.PodIP == b.Status.PodIP {
		t.Fatalf("the two pods have the addresses %q and %q: want two of their own", a.Status.PodIP, b.Status.PodIP)
	}
	ctx := testbed.Context(t, 30*time.Second)
	ca := mustConnect(t, env, nsA, "db-0", "password-a")
	cb := mustConnect(t, env, nsB, "db-0", "password-b")
	if _, err := ca.Exec(ctx, "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('only-in-a')"); err != nil {
		t.Fatal(err)
	}
	var exists bool
	if err := cb.QueryRow(ctx, "SELECT to_regclass('public.marker') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatal("a table created in one namespace's database is visible in the other's")
	}
	// Each server has its own credentials, too.
	if c, err := connect(ctx, t, env, nsB, "db-0", "password-a"); err == nil {
		c.Close(ctx)
		t.Fatal("namespace B's server accepted namespace A's password")
	}
}
