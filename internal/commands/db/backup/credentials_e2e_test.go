package backup_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// A restore brings back the catalog of the backup's time, passwords included. Rotate, then
// restore to a backup from before the rotation (in place by ID, in place to a time, and --into):
// the Secret's credentials still log in, and an attached workload keeps working.
func TestE2ERestoreAfterRotationKeepsCredentials(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := context.Background()
	must := func(args ...string) testbed.Result {
		t.Helper()
		r := env.Run(t, ns, args...)
		if r.Code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, r.Code, r.Stdout, r.Stderr)
		}
		return r
	}
	psql := func(sql string) string { t.Helper(); return superuserSQL(t, env, ns, "rot", sql) }
	// loginWorks logs in with the Secret's credentials through a tunnel (db run).
	loginWorks := func(db, when string) {
		t.Helper()
		r := env.Run(t, ns, "db", "run", db, "--", "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", "select 1")
		if r.Code != 0 {
			t.Fatalf("%s: the Secret's credentials of %s do not log in: exit %d\n%s", when, db, r.Code, r.Stderr)
		}
	}
	web := testbed.AppDeployment("web", database.DefaultImageRepository+":17")
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// appWorks connects from the attached app's running pod, with the DATABASE_URL it was given.
	appWorks := func(when string) {
		t.Helper()
		pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		var pod string
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				pod = p.Name
			}
		}
		if pod == "" {
			t.Fatalf("%s: no running pod of the attached app", when)
		}
		out, err := exec.Command(env.Kubectl(), "--kubeconfig", env.Kubeconfig, "-n", ns, "exec", pod, "-c", "app", "--",
			"sh", "-c", `psql "$DATABASE_URL" -X -At -c 'select 1'`).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "1" {
			t.Fatalf("%s: the attached app cannot log in: %v\n%s", when, err, out)
		}
	}

	must("db", "create", "rot", "--plan", "standard", "--storage", "1Gi")
	must("db", "attach", "rot", "--to", "deployment/web")
	psql("create table t (i int); insert into t values (1)")
	var created struct {
		Backup struct {
			ID   string
			Stop time.Time
		} `json:"backup"`
	}
	if err := json.Unmarshal([]byte(must("db", "backup", "create", "rot", "-o", "json").Stdout), &created); err != nil || created.Backup.ID == "" {
		t.Fatalf("backup create: %v", err)
	}
	// A point in time after the backup, archived before the rotation. The recoverable window is
	// in whole seconds (pgBackRest's backup times): the point is a whole second after the
	// backup's, with a row written before it and one after it, each in a second of its own.
	stop := created.Backup.Stop.UTC().Truncate(time.Second)
	psql("select pg_sleep_until('" + stop.Add(2*time.Second).Format(time.RFC3339) + "')")
	psql("insert into t values (2)")
	point := psql("select to_char(date_trunc('second', now() at time zone 'UTC') + interval '1 second', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
	psql("select pg_sleep_until('" + point + "'::timestamptz + interval '1 second')")
	psql("insert into t values (3)")
	waitArchived(t, psql, "last_archived_time > '"+point+"'::timestamptz + interval '1 second'")
	before := must("db", "rotate-credentials", "rot", "--yes", "-o", "json").Stdout
	if !strings.Contains(before, "rot") {
		t.Fatalf("rotate-credentials: %s", before)
	}
	appWorks("after the rotation")

	must("db", "restore", "rot", "--to-time", point, "--yes")
	if got := psql("select count(*) from t"); got != "2" {
		t.Fatalf("restored to %s: %s rows, want 2", point, got)
	}
	loginWorks("rot", "after an in-place restore to a time")
	appWorks("after an in-place restore to a time")

	must("db", "rotate-credentials", "rot", "--yes")
	must("db", "restore", "rot", "--backup", created.Backup.ID, "--yes")
	if got := psql("select count(*) from t"); got != "1" {
		t.Fatalf("restored to %s: %s rows, want 1", created.Backup.ID, got)
	}
	loginWorks("rot", "after an in-place restore by ID")
	appWorks("after an in-place restore by ID")

	must("db", "restore", "rot", "--backup", created.Backup.ID, "--into", "rot-copy")
	loginWorks("rot-copy", "after a restore --into")
}
