package insights_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// insights runs db insights -o json with args, and returns the report and the exit code.
func insights(t *testing.T, env *testbed.Env, ns, db string, args ...string) (*database.Insights, int, string) {
	t.Helper()
	r := env.Run(t, ns, append([]string{"db", "insights", db, "-o", "json", "--long", "5s"}, args...)...)
	var rep database.Insights
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil || rep.Database != db || len(rep.Checks) < 16 {
		t.Fatalf("insights -o json: exit %d, %v\n%s\n%s", r.Code, err, r.Stdout, r.Stderr)
	}
	return &rep, r.Code, r.Stderr
}

func check(rep *database.Insights, name string) database.Check {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c
		}
	}
	return database.Check{Name: name, Status: "missing"}
}

// A healthy database is all ✔; each check turns when the test makes it so: a lock that blocks
// another session (both queries named), a transaction left open, a session idle in a
// transaction, an index never used, a query that dominates pg_stat_statements, the disk past
// 80%, WAL archiving that fails (named), a backup older than a day. --fail-on bad exits 10
// exactly when a check is bad. Insights changes nothing.
func TestE2EInsights(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := context.Background()
	const db = "health"
	pod := database.PodName(db)
	if r := env.Run(t, ns, "db", "create", db); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	app := func(sql string) {
		t.Helper()
		if r := env.Run(t, ns, "db", "run", db, "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql); r.Code != 0 {
			t.Fatalf("psql %q: exit %d\n%s", sql, r.Code, r.Stderr)
		}
	}
	app("create table orders (id int primary key, v text); insert into orders select g, 'x' || g from generate_series(1, 1000) g; select v from orders where id = 5")
	if r := env.Run(t, ns, "db", "backup", "create", db); r.Code != 0 {
		t.Fatalf("backup create: exit %d\n%s", r.Code, r.Stderr)
	}
	sts, err := env.Client.AppsV1().StatefulSets(ns).Get(ctx, db, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Healthy: every check ok, --fail-on warn exits 0.
	rep, code, stderr := insights(t, env, ns, db, "--fail-on", "warn")
	for _, c := range rep.Checks {
		if c.Status != database.CheckOK {
			t.Errorf("healthy database: %s is %s: %s %q", c.Name, c.Status, c.Value, c.Details)
		}
	}
	if code != 0 || rep.Status != database.CheckOK {
		t.Fatalf("healthy database: exit %d, status %s\n%s", code, rep.Status, stderr)
	}

	// The disk past 80% (an unlogged table in the postgres database: no WAL), an index no
	// query uses, and a statement that takes most of the application's time.
	env.MustExec(t, ns, pod, "sh", "-c", fmt.Sprintf(
		`psql -X -q -d postgres -c "create unlogged table fill (n int, pad text)" || exit 1
while [ "$(df --output=pcent %s | tail -n 1 | tr -dc 0-9)" -lt 81 ]; do
  psql -X -q -d postgres -v ON_ERROR_STOP=1 -c "insert into fill select g, repeat(md5(random()::text), 30) from generate_series(1, 10000) g" || exit 1
done`, database.DataMountPath))
	app("create index orders_v on orders (v)")
	app("select pg_sleep(1.5)")
	// A session that holds a lock in a long statement, one that waits for it, and one idle in a
	// transaction (in the database's container, as the superuser: they run until ended).
	// The locker takes its lock first; the waiter starts once the lock is held.
	sessions := []struct{ name, sh, wait string }{
		{"locker", `psql -X -d health -c "begin; lock table orders in access exclusive mode; select pg_sleep(600)"`,
			"select count(*) from pg_locks where relation = 'orders'::regclass and mode = 'AccessExclusiveLock' and granted"},
		{"waiter", `psql -X -d health -c "select count(*) from orders"`,
			"select count(*) from pg_locks where relation = 'orders'::regclass and not granted"},
		{"idle-tx", `(echo "begin; select 42 as idle_marker;"; sleep 600 & echo $! >/tmp/idle-tx.pid; wait) | psql -X -d health`,
			"select count(*) from pg_stat_activity where state = 'idle in transaction' and query like '%idle_marker%'"},
	}
	done := make(chan string, len(sessions))
	for _, s := range sessions {
		go func() {
			_, _ = env.Exec(t, ns, pod, "sh", "-c", s.sh)
			done <- s.name
		}()
		for deadline := time.Now().Add(time.Minute); ; {
			if strings.TrimSpace(env.MustExec(t, ns, pod, "psql", "-X", "-At", "-d", "health", "-c", s.wait)) != "0" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("session %s did not start", s.name)
			}
		}
	}
	// Wait, by reading the report, until the last session started has been idle past --long (5s).
	deadline := time.Now().Add(2 * time.Minute)
	for check(rep, "idle-in-transaction").Status == database.CheckOK && time.Now().Before(deadline) {
		rep, _, _ = insights(t, env, ns, db)
	}
	for name, want := range map[string]string{
		"long-queries":        "select pg_sleep(600)",
		"long-transactions":   "lock table orders",
		"idle-in-transaction": "idle_marker",
		"blocking":            "select count(*) from orders; blocked by pid",
		"unused-indexes":      "public.orders_v",
		"top-queries":         "pg_sleep",
		"disk":                "",
	} {
		c := check(rep, name)
		if c.Status != database.CheckWarn || !strings.Contains(strings.Join(c.Details, "\n")+c.Value, want) || c.Advice == "" {
			t.Errorf("%s: %s, want warn naming %q: %s %q %q", name, c.Status, want, c.Value, c.Details, c.Advice)
		}
	}
	if c := check(rep, "blocking"); !strings.Contains(strings.Join(c.Details, ""), "lock table orders") {
		t.Errorf("blocking does not name the blocker's query: %q", c.Details)
	}
	if _, code, stderr := insights(t, env, ns, db, "--fail-on", "bad"); code != 0 {
		t.Errorf("--fail-on bad with warnings only: exit %d\n%s", code, stderr)
	}
	if _, code, stderr := insights(t, env, ns, db, "--fail-on", "warn"); code != cmdutil.ExitUnhealthy || !strings.Contains(stderr, "blocking is warn") {
		t.Errorf("--fail-on warn with warnings: exit %d\n%s", code, stderr)
	}
	// The text report says the same.
	if r := env.Run(t, ns, "db", "insights", db, "--long", "5s"); r.Code != 0 || !strings.Contains(r.Stdout, "⚠ Blocked sessions") || !strings.Contains(r.Stdout, "✔ Connections") {
		t.Errorf("text report: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	env.MustExec(t, ns, pod, "psql", "-X", "-q", "-d", "postgres", "-c",
		"select pg_terminate_backend(pid) from pg_stat_activity where datname = 'health' and pid <> pg_backend_pid() and backend_type = 'client backend'")
	env.MustExec(t, ns, pod, "sh", "-c", "kill $(cat /tmp/idle-tx.pid)")
	for range sessions {
		<-done
	}

	// WAL archiving that fails: the repository's archive cannot be written.
	archive := database.BackupMountPath + "/repo/archive/" + db
	env.MustExec(t, ns, pod, "chmod", "000", archive)
	t.Cleanup(func() { _, _ = env.Exec(t, ns, pod, "chmod", "750", archive) })
	env.MustExec(t, ns, pod, "psql", "-X", "-q", "-d", "health", "-c", "insert into orders values (1001, 'y')")
	env.MustExec(t, ns, pod, "psql", "-X", "-q", "-d", "postgres", "-c", "select pg_switch_wal()")
	deadline = time.Now().Add(2 * time.Minute)
	for check(rep, "wal-archiving").Status != database.CheckBad && time.Now().Before(deadline) {
		rep, code, stderr = insights(t, env, ns, db, "--fail-on", "bad")
	}
	c := check(rep, "wal-archiving")
	if c.Status != database.CheckBad || !strings.Contains(strings.Join(c.Details, " "), "ermission denied") {
		t.Errorf("wal-archiving with an unwritable repository: %s %s %q", c.Status, c.Value, c.Details)
	}
	if code != cmdutil.ExitUnhealthy || !strings.Contains(stderr, "wal-archiving is bad") {
		t.Errorf("--fail-on bad with archiving failing: exit %d\n%s", code, stderr)
	}
	for _, c := range rep.Checks {
		if c.Status == database.CheckBad && c.Name != "wal-archiving" {
			t.Errorf("%s is bad too: %s %q", c.Name, c.Value, c.Details)
		}
	}

	env.MustExec(t, ns, pod, "chmod", "750", archive)

	// A backup older than a day: the same report read with a clock a day ahead (the real
	// repository; only the clock is shifted).
	kc, err := kube.Load(kube.LoadOptions{Kubeconfig: env.Kubeconfig, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	for ahead, want := range map[time.Duration]string{26 * time.Hour: database.CheckWarn, 50 * time.Hour: database.CheckBad} {
		r, err := database.ReadInsights(ctx, kc, db, database.InsightsOptions{Long: 5 * time.Second, Now: func() time.Time { return time.Now().Add(ahead) }})
		if err != nil {
			t.Fatal(err)
		}
		if c := check(r, "backups"); c.Status != want {
			t.Errorf("backups read %s ahead: %s, want %s: %s", ahead, c.Status, want, c.Value)
		}
	}

	// Nothing was changed by any of it.
	after, err := env.Client.AppsV1().StatefulSets(ns).Get(ctx, db, metav1.GetOptions{})
	if err != nil || after.ResourceVersion != sts.ResourceVersion {
		t.Errorf("insights changed the StatefulSet: %v", err)
	}
}
