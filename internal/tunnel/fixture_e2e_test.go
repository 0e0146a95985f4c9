package tunnel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// testDB is a database made the way `db create` makes one, reduced to what the tunnel needs:
// a Secret with the password and a one-replica StatefulSet with a volume, in its own namespace.
type testDB struct {
	env      *testbed.Env
	ns       string
	name     string
	user     string
	password string
	database string
}

const dbPort = 5432

// newTestDB creates the database in a fresh namespace and waits (by watching) until its pod
// is Ready.
func newTestDB(t testing.TB, ctx context.Context, env *testbed.Env) *testDB {
	t.Helper()
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	db := &testDB{
		env: env, ns: env.Namespace(t, nil), name: "db",
		user: "postgres", password: hex.EncodeToString(b[:]), database: "app",
	}
	labels := map[string]string{"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": db.name}
	c := env.Client

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: db.name + "-superuser", Namespace: db.ns, Labels: labels},
		StringData: map[string]string{"POSTGRES_PASSWORD": db.password},
	}
	if _, err := c.CoreV1().Secrets(db.ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create secret: %v", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: db.name + "-headless", Namespace: db.ns, Labels: labels},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone, Selector: labels,
			Ports: []corev1.ServicePort{{Name: "postgres", Port: dbPort}},
		},
	}
	if _, err := c.CoreV1().Services(db.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create service: %v", err)
	}
	one := int32(1)
	postgresUID := int64(database.PostgresUID)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: db.name, Namespace: db.ns, Labels: labels},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &one,
			ServiceName: svc.Name,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{
					RunAsUser: &postgresUID, RunAsGroup: &postgresUID, FSGroup: &postgresUID,
				}, Containers: []corev1.Container{{
					Name:  "postgres",
					Image: database.DefaultImageRepository + ":17",
					Ports: []corev1.ContainerPort{{Name: "postgres", ContainerPort: dbPort}},
					// Ready once the server answers (the image initialises the data directory first).
					ReadinessProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"pg_isready", "-h", "127.0.0.1", "-q"}}},
						PeriodSeconds: 1,
					},
					Env: []corev1.EnvVar{
						{Name: "POSTGRES_USER", Value: db.user},
						{Name: "POSTGRES_DB", Value: db.database},
						{Name: "PGDATA", Value: "/var/lib/postgresql/data/pgdata"},
						{Name: "POSTGRES_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
							LocalObjectReference: corev1.LocalObjectReference{Name: secret.Name}, Key: "POSTGRES_PASSWORD",
						}}},
					},
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}},
				}}},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					// Room for TestE2ECopy1GiB's 1 GiB table (the volume is a filesystem of this size).
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
						corev1.ResourceStorage: resource.MustParse("3Gi"),
					}},
				},
			}},
		},
	}
	if _, err := c.AppsV1().StatefulSets(db.ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create statefulset: %v", err)
	}
	waitPodReady(t, ctx, c, db.ns, db.pod(), "")
	return db
}

func (db *testDB) pod() string      { return db.name + "-0" }
func (db *testDB) selector() string { return "app.kubernetes.io/instance=" + db.name }

// connString points at a tunnel's local address.
func (db *testDB) connString(addr string) string {
	u := url.URL{
		Scheme: "postgres", User: url.UserPassword(db.user, db.password), Host: addr, Path: "/" + db.database,
		RawQuery: "sslmode=disable&connect_timeout=30",
	}
	return u.String()
}

// open opens a tunnel to the database (by selector unless a pod is given) and closes it at
// the end of the test. Its diagnostics go to the test log.
func (db *testDB) open(t testing.TB, ctx context.Context, target Target) *Tunnel {
	t.Helper()
	target.Namespace = db.ns
	if target.Port == 0 {
		target.Port = dbPort
	}
	tun, err := Open(ctx, Config{REST: db.env.REST, Client: db.env.Client, Logf: t.Logf}, target)
	if err != nil {
		t.Fatalf("open tunnel: %v", err)
	}
	t.Cleanup(func() {
		if err := tun.Close(); err != nil {
			t.Errorf("close tunnel: %v", err)
		}
	})
	return tun
}

// waitPodReady watches pod until it is Ready with a UID other than notUID (the pod it
// replaces, or "" for any), and returns it.
func waitPodReady(t testing.TB, ctx context.Context, c kubernetes.Interface, ns, name string, notUID types.UID) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	p, err := testbed.WaitPod(ctx, c, ns, name, func(p *corev1.Pod) bool { return p != nil && p.UID != notUID && kube.PodReady(p) })
	if err != nil {
		t.Fatalf("pod %s/%s did not become ready: %v", ns, name, err)
	}
	return p
}

// waitPodGone watches until no pod named name has the given UID.
func waitPodGone(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, name string, uid types.UID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	for {
		list, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			t.Fatalf("list pod %s/%s: %v", ns, name, err)
		}
		present := false
		for _, p := range list.Items {
			present = present || p.UID == uid
		}
		if !present {
			return
		}
		w, err := c.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
		if err != nil {
			t.Fatalf("watch pod %s/%s: %v", ns, name, err)
		}
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Deleted && p.UID == uid {
				w.Stop()
				return
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			t.Fatalf("pod %s/%s (uid %s) was not deleted: %v", ns, name, uid, ctx.Err())
		}
	}
}
