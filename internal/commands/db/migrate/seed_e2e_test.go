package migrate_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// appScript is the example application: a real container that waits for DATABASE_URL (which
// `db attach` injects from the Secret), resolves the database's DNS name, writes a row over the
// Service's ClusterIP with psql (in a schema of its own: Prisma migrates only an empty public
// schema), and then is Ready.
const appScript = `set -eu
if [ -z "${DATABASE_URL:-}" ]; then echo "no DATABASE_URL: not attached yet"; exec sleep infinity; fi
host=$(printf '%s' "$DATABASE_URL" | sed -E 's#^[^@]*@([^:/]+).*$#\1#')
echo "resolved $host to $(getent hosts "$host" | awk '{print $1}')"
psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 \
  -c "CREATE SCHEMA IF NOT EXISTS web" -c "CREATE TABLE IF NOT EXISTS web.boot (at timestamptz DEFAULT now(), pod text)" \
  -c "INSERT INTO web.boot (pod) VALUES ('$HOSTNAME')"
echo "wrote a row"
touch /tmp/ready
exec sleep infinity`

// waitAppPod watches the app's pods until one is Ready with DATABASE_URL in its environment.
func waitAppPod(t *testing.T, env *testbed.Env, ns string) *corev1.Pod {
	t.Helper()
	p, err := testbed.WaitPodSelected(testbed.Context(t, 3*time.Minute), env.Client, ns, "app=web", func(p *corev1.Pod) bool {
		for _, e := range p.Spec.Containers[0].Env {
			if e.Name == "DATABASE_URL" {
				return kube.PodReady(p)
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("no attached app pod became Ready: %v", err)
	}
	return p
}

func execIn(t *testing.T, env *testbed.Env, ns, pod string, argv ...string) string {
	t.Helper()
	out, err := env.Exec(t, ns, pod, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// TestE2ESeedStory is the product's first story, on real containers: `db create` (PostgreSQL 17)
// → `db attach` to a Deployment whose pod reads DATABASE_URL from the Secret, resolves the
// Service's DNS name and writes a row over the ClusterIP → `db migrate -- npx prisma migrate
// deploy` applies the three migrations of examples/prisma, with Prisma's own output → run again
// at once, it says nothing is pending (the first run's session, and its migration lock, are gone)
// → the app pod queries the migrated table.
func TestE2ESeedStory(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := testbed.Context(t, 8*time.Minute)
	if r := env.Run(t, ns, "db", "create", "shop", "--version", "17"); r.Code != 0 {
		t.Fatalf("db create: exit %d\n%s", r.Code, r.Stderr)
	}

	image := database.DefaultImageRepository + ":17"
	web := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{
						Name: "web", Image: image, Command: []string{"bash", "-c", appScript},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/tmp/ready"}}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := env.Run(t, ns, "db", "attach", "shop", "--to", "deployment/web"); r.Code != 0 {
		t.Fatalf("db attach: exit %d\n%s", r.Code, r.Stderr)
	}
	app := waitAppPod(t, env, ns)
	svc, err := env.Client.CoreV1().Services(ns).Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	logs, err := env.Client.CoreV1().Pods(ns).GetLogs(app.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := "resolved shop." + ns + ".svc.cluster.local to " + svc.Spec.ClusterIP
	if !strings.Contains(string(logs), want) || !strings.Contains(string(logs), "wrote a row") {
		t.Fatalf("the app pod's log lacks %q and %q:\n%s", want, "wrote a row", logs)
	}
	if got := execIn(t, env, ns, "shop-0", "psql", "-X", "-At", "-d", "shop", "-c", "SELECT pod FROM web.boot"); got != app.Name {
		t.Fatalf("rows written by the app: %q, want its pod's name %q", got, app.Name)
	}

	// The example project, installed as a developer would (npm ci), from the npm cache that
	// hack/e2e-tools.sh filled for it.
	tools(t, env)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(env.Root, "examples", "prisma"))); err != nil {
		t.Fatal(err)
	}
	npm := exec.Command("npm", "ci", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error")
	npm.Dir = dir
	if out, err := npm.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in the Prisma example: %v\n%s", err, out)
	}
	migrate := func() (string, string) {
		t.Helper()
		cmd := env.Command(t, ns, "db", "migrate", "shop", "--", "npx", "prisma", "migrate", "deploy")
		cmd.Dir = dir
		cmd.Env = append(cmd.Env, "CHECKPOINT_DISABLE=1", "PRISMA_HIDE_UPDATE_MESSAGE=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("db migrate -- npx prisma migrate deploy: %v\n--- stdout\n%s--- stderr\n%s", err, stdout.String(), stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	out, errOut := migrate()
	all := out + errOut
	for _, line := range []string{
		"3 migrations found in prisma/migrations",
		"The following migration(s) have been applied:",
		"20250101000000_init/",
		"20250102000000_add_user_agent/",
		"20250103000000_add_path_index/",
		"All migrations have been successfully applied.",
	} {
		if !strings.Contains(all, line) {
			t.Errorf("Prisma's output lacks %q:\n--- stdout\n%s--- stderr\n%s", line, out, errOut)
		}
	}
	secret, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "shop-credentials", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(all, string(secret.Data["password"])) {
		t.Error("the password is in the output of db migrate")
	}

	// At once again: the first run's server session (it held Prisma's advisory lock) is gone.
	out, errOut = migrate()
	if all := out + errOut; !strings.Contains(all, "No pending migrations to apply.") {
		t.Errorf("the second run did not say that nothing is pending:\n--- stdout\n%s--- stderr\n%s", out, errOut)
	}

	// The app's query of the migrated table.
	query := `psql "$DATABASE_URL" -X -q -At -v ON_ERROR_STOP=1 -c "INSERT INTO \"Visit\" (path, \"userAgent\") VALUES ('/', 'test') RETURNING id, path"`
	out, err = env.Exec(t, ns, app.Name, "bash", "-c", query)
	if err != nil {
		t.Fatalf("the app's query of the migrated table: %v", err)
	}
	got := strings.TrimSpace(out)
	if got != "1|/" {
		t.Errorf("the app's query of the migrated table returned %q, want 1|/", got)
	}
}
