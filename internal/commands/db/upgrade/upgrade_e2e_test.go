package upgrade_test

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/commands"
	"github.com/stackblaze/stackblaze/internal/commands/db/upgrade"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// schema is what the upgrade must carry over: tables, an index, a sequence, a view, a row-level
// trigger and an extension that both majors have (pgcrypto, trusted: the owner may create it).
const schema = `
create extension pgcrypto;
create sequence order_no start 1000;
create table customers (id serial primary key, email text not null);
create table orders (id bigint primary key default nextval('order_no'), customer int references customers,
  total numeric not null, digest text);
create index orders_customer on orders (customer);
create view big_orders as select * from orders where total > 100;
create function orders_digest() returns trigger language plpgsql as
  $$ begin new.digest := encode(digest(new.total::text, 'sha256'), 'hex'); return new; end $$;
create trigger orders_digest before insert on orders for each row execute function orders_digest();
insert into customers (email) select 'c' || i || '@example.com' from generate_series(1, 200) i;
insert into orders (customer, total) select 1 + i % 200, i from generate_series(1, 500) i;
create table writes (n int primary key, at timestamptz default now());
`

// state reads what the upgrade must keep, through the application's own login (the Secret).
const state = `select current_setting('server_version_num')::int / 10000,
  (select count(*) from customers), (select count(*) from orders), (select count(*) from big_orders),
  (select count(*) from orders where digest = encode(digest(total::text, 'sha256'), 'hex')),
  (select count(*) from pg_indexes where indexname = 'orders_customer'),
  (select extversion is not null from pg_extension where extname = 'pgcrypto')`

func statefulSet(t *testing.T, env *testbed.Env, ns, db string) (version, resourceVersion string, rec *database.UpgradeRecord) {
	t.Helper()
	sts, err := env.Client.AppsV1().StatefulSets(ns).Get(context.Background(), db, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec, err = database.UpgradeOf(sts)
	if err != nil {
		t.Fatal(err)
	}
	return sts.Annotations[database.AnnotationVersion], sts.ResourceVersion, rec
}

func TestE2EUpgrade(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	const db = "shop"
	if r := env.Run(t, ns, "db", "create", db, "--version", "15"); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	env.SQL(t, ns, db, schema)
	before := env.SQL(t, ns, db, state)
	if !strings.HasPrefix(before, "15|200|500|") {
		t.Fatalf("the seeded state on 15 is %q", before)
	}
	env.StartWriter(t, ns, db, "writes", database.DefaultImageRepository+":17")
	env.FollowWriter(t, ns, func(w testbed.WriterLog) bool { return len(w.Committed) >= 20 })

	// The check finds a planted blocker, exits with its own code and changes nothing.
	env.SQL(t, ns, db, "create table blocker (f regproc); insert into blocker values ('now')")
	_, rv, _ := statefulSet(t, env, ns, db)
	r := env.Run(t, ns, "db", "upgrade", db, "--version", "17", "--check", "-o", "json")
	if r.Code != 9 {
		t.Fatalf("--check with a reg* column: exit %d, want 9\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	var res upgrade.Result
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || res.Check == nil || !res.Check.Blocked {
		t.Fatalf("--check -o json: %v\n%s", err, r.Stdout)
	}
	if f := res.Check.Findings; len(f) == 0 || f[0].Code != "pg_upgrade" || !strings.Contains(f[0].Message, "public.blocker.f") {
		t.Errorf("the finding does not name the column: %+v", f)
	}
	if v, rv2, rec := statefulSet(t, env, ns, db); v != "15" || rv2 != rv || rec != nil {
		t.Errorf("--check changed the StatefulSet: version %s, resourceVersion %s → %s, record %+v", v, rv, rv2, rec)
	}
	pods, err := env.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: database.LabelUpgrade})
	if err != nil || len(pods.Items) != 0 {
		t.Errorf("--check left pods behind: %v %v", err, pods.Items)
	}
	env.SQL(t, ns, db, "drop table blocker")
	if r := env.Run(t, ns, "db", "upgrade", db, "--version", "17", "--check"); r.Code != 0 || !strings.Contains(r.Stdout, "can be upgraded") {
		t.Fatalf("--check without the blocker: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}

	// The upgrade.
	r = env.Run(t, ns, "db", "upgrade", db, "--version", "17", "--yes", "-o", "json")
	if r.Code != 0 {
		t.Fatalf("upgrade: exit %d\n%s", r.Code, r.Stderr)
	}
	res = upgrade.Result{}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || res.Upgrade == nil {
		t.Fatalf("upgrade -o json: %v\n%s", err, r.Stdout)
	}
	rec := res.Upgrade
	if rec.From != 15 || rec.To != 17 || rec.Phase != database.UpgradeDone || res.OutageSeconds <= 0 || rec.NewBackup == "" {
		t.Errorf("upgrade result: %+v (outage %vs)", rec, res.OutageSeconds)
	}
	for _, step := range []string{"Backup", "pg_upgrade", "writes were refused for", "statistics", "Full backup"} {
		if !strings.Contains(r.Stderr, step) {
			t.Errorf("the progress does not say %q:\n%s", step, r.Stderr)
		}
	}
	after := env.SQL(t, ns, db, state)
	if want := "17" + strings.TrimPrefix(before, "15"); after != want {
		t.Errorf("after the upgrade, through the Secret's login: %q, want %q", after, want)
	}
	// The sequence, the trigger and the extension work on 17.
	if got := env.SQL(t, ns, db, "insert into orders (customer, total) values (1, 7) returning id, digest = encode(digest('7', 'sha256'), 'hex')"); got != "1500|t" {
		t.Errorf("insert on 17: %q, want 1500|t (the sequence goes on, the trigger fires)", got)
	}

	// The writer, which reconnects for every row, lost nothing it saw committed; it saw the
	// outage and wrote again after it.
	seen := env.FollowWriter(t, ns, func(w testbed.WriterLog) bool { return len(w.Failed) > 0 && len(w.Committed) >= 20 }).Committed
	seen = env.FollowWriter(t, ns, func(w testbed.WriterLog) bool { return len(w.Committed) >= len(seen)+20 }).Committed
	have := env.WriterRows(t, ns, db, "writes")
	var missing []int
	for n := range seen {
		if have[n] == 0 {
			missing = append(missing, n)
		}
	}
	sort.Ints(missing)
	if len(missing) > 0 {
		t.Errorf("rows the writer saw committed are missing after the upgrade: %v", missing)
	}

	// backup list shows a full backup on 17, and the 15 backup before it.
	r = env.Run(t, ns, "db", "backup", "list", db, "-o", "json")
	var list database.BackupList
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &list) != nil {
		t.Fatalf("backup list: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	var full17, old15 bool
	for _, b := range list.Backups {
		full17 = full17 || b.ID == rec.NewBackup && b.Type == "full" && b.PostgresVersion == "17" && b.Current
		old15 = old15 || b.ID == rec.Backup && b.PostgresVersion == "15" && !b.Current
	}
	if !full17 || !old15 || list.Version != "17" || list.Upgrade == nil {
		t.Errorf("backup list after the upgrade: %+v", list)
	}
	r = env.Run(t, ns, "db", "status", db)
	if !strings.Contains(r.Stdout, "PostgreSQL 17") || !strings.Contains(r.Stdout, "from PostgreSQL 15 to 17") {
		t.Errorf("status after the upgrade:\n%s", r.Stdout)
	}
	// A restore of the backup of 15 is refused, with the way back in the hint.
	if r := env.Run(t, ns, "db", "restore", db, "--backup", rec.Backup, "--yes"); r.Code != 2 || !strings.Contains(r.Stderr, "--revert") {
		t.Errorf("restore of the 15 backup onto 17: exit %d\n%s", r.Code, r.Stderr)
	}
	// Downgrades are refused with what is allowed.
	if r := env.Run(t, ns, "db", "upgrade", db, "--version", "15", "--check"); r.Code != 2 || !strings.Contains(r.Stderr, "use 18") {
		t.Errorf("--version 15 on 17: exit %d\n%s", r.Code, r.Stderr)
	}

	// The way back: 15 again, with what was written before the upgrade; what was written on
	// 17 is named before and lost after.
	env.SQL(t, ns, db, "insert into customers (email) values ('on-17@example.com')")
	// A session's statistics reach the server's counters when it ends, which is a moment after
	// its client is gone: --revert is run once they are there (docs/upgrades.md says so).
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if strings.TrimSpace(env.MustExec(t, ns, database.PodName(db), "psql", "-X", "-At", "-U", "postgres", "-d", "shop", "-c",
			"select n_tup_ins from pg_stat_user_tables where relname = 'customers'")) != "0" {
			break
		}
	}
	r = env.Run(t, ns, "db", "upgrade", db, "--revert", "--yes", "-o", "json")
	if r.Code != 0 {
		t.Fatalf("--revert: exit %d\n%s", r.Code, r.Stderr)
	}
	res = upgrade.Result{}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || res.Lost == nil || res.Upgrade.Phase != database.UpgradeReverted {
		t.Fatalf("--revert -o json: %v\n%s", err, r.Stdout)
	}
	lostCustomers := false
	for _, tl := range res.Lost.Tables {
		lostCustomers = lostCustomers || tl.Table == "public.customers" && tl.Inserted == 1
	}
	if !lostCustomers {
		t.Errorf("--revert does not name the row written on 17 as lost: %+v", res.Lost)
	}
	if got := env.SQL(t, ns, db, state); got != before {
		t.Errorf("after --revert: %q, want the state before the upgrade %q", got, before)
	}
	have = env.WriterRows(t, ns, db, "writes")
	missing = nil
	for n, at := range seen {
		if at.Before(rec.Stopped) && have[n] == 0 {
			missing = append(missing, n)
		}
	}
	sort.Ints(missing)
	if len(missing) > 0 {
		t.Errorf("rows committed before the upgrade stopped the database are missing after --revert: %v", missing)
	}
	if v, _, rec := statefulSet(t, env, ns, db); v != "15" || rec.Phase != database.UpgradeReverted {
		t.Errorf("after --revert: version %s, record %+v", v, rec)
	}
	if r := env.Run(t, ns, "db", "upgrade", db, "--revert", "--yes"); r.Code != 2 {
		t.Errorf("a second --revert: exit %d, want 2\n%s", r.Code, r.Stderr)
	}
}

// killAfterEnv makes the test binary, run by runKilledAfter, be the stackblaze command line whose
// upgrades kill their own process with SIGKILL right after the step it names.
const killAfterEnv = "TEST_HELPER_UPGRADE_KILL_AFTER"

// TestHelperKilledAfterStep is not a test: run by runKilledAfter, it is the stackblaze command line
// whose upgrade runs kill their own process after the step named in killAfterEnv.
func TestHelperKilledAfterStep(t *testing.T) {
	testbed.KilledAfterStepMain(t, killAfterEnv, upgrade.SetAfterStep, func(ctx context.Context, args []string) int {
		return commands.Main(ctx, output.System(), args)
	})
}

// runKilledAfter runs the command line in a process of its own that is killed after step.
func runKilledAfter(t *testing.T, env *testbed.Env, ns, step string, args ...string) testbed.Result {
	t.Helper()
	return env.RunKilledAfter(t, ns, "TestHelperKilledAfterStep", killAfterEnv, step, args...)
}

// TestE2EUpgradeKilledAtEachStep kills the upgrade after each of its steps in turn (each run
// going on from where the one before died) and checks that the database is never lost: the
// record names the step, a run after every kill goes on, and the last one finishes on 17 with
// every row.
func TestE2EUpgradeKilledAtEachStep(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	const db = "crash"
	if r := env.Run(t, ns, "db", "create", db, "--version", "15"); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	env.SQL(t, ns, db, schema)
	before := env.SQL(t, ns, db, state)
	for _, step := range upgrade.Steps {
		r := runKilledAfter(t, env, ns, step, "db", "upgrade", db, "--version", "17", "--yes", "--lease-duration", "3s")
		if r.Code != -1 {
			t.Fatalf("the crash hook did not kill the run after %s: exit %d\n%s", step, r.Code, r.Stderr)
		}
		v, _, rec := statefulSet(t, env, ns, db)
		if rec == nil || rec.Phase != step {
			t.Fatalf("after a kill at %s the record is %+v", step, rec)
		}
		// Before the new major starts, the StatefulSet still runs 15: a run that goes no further
		// leaves the old major and its data.
		reached := map[string]bool{}
		for _, s := range upgrade.Steps {
			reached[s] = true
			if s == step {
				break
			}
		}
		if want := map[bool]string{true: "17", false: "15"}[reached[database.UpgradeStarted]]; v != want && step != database.UpgradeStarting {
			t.Errorf("after a kill at %s the StatefulSet runs %s, want %s", step, v, want)
		}
	}
	r := env.Run(t, ns, "db", "upgrade", db, "--version", "17", "--yes", "-o", "json")
	if r.Code != 0 {
		t.Fatalf("the run after the last kill: exit %d\n%s", r.Code, r.Stderr)
	}
	if got, want := env.SQL(t, ns, db, state), "17"+strings.TrimPrefix(before, "15"); got != want {
		t.Errorf("after the killed runs: %q, want %q", got, want)
	}
	if v, _, rec := statefulSet(t, env, ns, db); v != "17" || rec.Phase != database.UpgradeDone {
		t.Errorf("after the killed runs: version %s, record %+v", v, rec)
	}
	if r := env.Run(t, ns, "db", "upgrade", db, "--finish"); r.Code != 0 || !strings.Contains(r.Stdout, "finished") {
		t.Errorf("--finish: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := env.Run(t, ns, "db", "upgrade", db, "--revert", "--yes"); r.Code != 2 || !strings.Contains(r.Stderr, "no way back") {
		t.Errorf("--revert after --finish: exit %d\n%s", r.Code, r.Stderr)
	}
}

// A failure leaves the database on the old major with its data and says so: a check that cannot
// run (the test bed has no image of PostgreSQL 16: a real pull failure), and a new major that is
// not up in time (--timeout 1s: the wait runs out, as for a server that does not start), after
// which the database goes back to 15 from the backup.
func TestE2EUpgradeFailureLeavesTheOldMajor(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	const db = "fail"
	if r := env.Run(t, ns, "db", "create", db, "--version", "15"); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	env.SQL(t, ns, db, schema)
	before := env.SQL(t, ns, db, state)

	_, rv, _ := statefulSet(t, env, ns, db)
	r := env.Run(t, ns, "db", "upgrade", db, "--version", "16", "--yes")
	if r.Code != 1 || !strings.Contains(r.Stderr, "stackblaze/postgres:16") {
		t.Errorf("upgrade to a major with no image: exit %d\n%s", r.Code, r.Stderr)
	}
	if v, rv2, rec := statefulSet(t, env, ns, db); v != "15" || rv2 != rv || rec != nil {
		t.Errorf("a failed check changed the StatefulSet: version %s, record %+v", v, rec)
	}
	pods, err := env.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: database.LabelUpgrade})
	if err != nil || len(pods.Items) != 0 {
		t.Errorf("the failed check left pods: %v %d", err, len(pods.Items))
	}

	r = env.Run(t, ns, "db", "upgrade", db, "--version", "17", "--yes", "--timeout", "1s")
	if r.Code != 1 || !strings.Contains(r.Stderr, "back on PostgreSQL 15") {
		t.Fatalf("upgrade whose new major is not up in time: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := env.SQL(t, ns, db, state); got != before {
		t.Errorf("after the failed upgrade: %q, want %q", got, before)
	}
	if v, _, rec := statefulSet(t, env, ns, db); v != "15" || rec == nil || rec.Phase != database.UpgradeReverted {
		t.Errorf("after the failed upgrade: version %s, record %+v", v, rec)
	}
}
