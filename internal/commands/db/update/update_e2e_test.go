package update_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// state is what a refused update must leave as it was: the StatefulSet and the pod.
func state(t *testing.T, env *testbed.Env, ns, db string) string {
	t.Helper()
	ctx := context.Background()
	sts, err := env.Client.AppsV1().StatefulSets(ns).Get(ctx, db, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod, err := env.Client.CoreV1().Pods(ns).Get(ctx, database.PodName(db), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sts.ResourceVersion + " " + string(pod.UID)
}

// memoryLimit is the memory limit of the database's container as its cgroup says (v1 or v2).
func memoryLimit(t *testing.T, env *testbed.Env, ns, db string) string {
	t.Helper()
	return strings.TrimSpace(env.MustExec(t, ns, database.PodName(db), "sh", "-c",
		"cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"))
}

// db update --plan: refused plans change nothing; standard gives a hobby database the plan's
// limits (in its cgroup), settings and WAL archiving timeout, with its data; the same plan again
// changes nothing; back to hobby; and a stopped database takes the plan when it starts.
func TestE2EUpdatePlan(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := context.Background()
	const db = "tier"
	if r := env.Run(t, ns, "db", "create", db); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	env.SQL(t, ns, db, "create table t (n int primary key); insert into t select generate_series(1, 1000)")
	settings := "select current_setting('archive_timeout'), current_setting('shared_buffers')"
	if got := env.SQL(t, ns, db, settings); got != "0|128MB" {
		t.Fatalf("hobby's settings: %s", got)
	}

	// Bad input, and a plan the namespace's quota does not admit: exit 2, nothing changed.
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "small"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceLimitsMemory: resource.MustParse("1Gi")}}}
	if _, err := env.Client.CoreV1().ResourceQuotas(ns).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The quota controller counts the running database (512Mi) before the check can use it.
	wctx := testbed.Context(t, time.Minute)
	lw := cache.NewListWatchFromClient(env.Client.CoreV1().RESTClient(), "resourcequotas", ns, fields.OneTermEqualSelector("metadata.name", "small"))
	if _, err := watchtools.UntilWithSync(wctx, lw, &corev1.ResourceQuota{}, nil, func(ev watch.Event) (bool, error) {
		q, ok := ev.Object.(*corev1.ResourceQuota)
		used := q.Status.Used[corev1.ResourceLimitsMemory]
		return ok && used.Cmp(resource.MustParse("512Mi")) == 0, nil
	}); err != nil {
		t.Fatalf("the quota never counted the database: %v", err)
	}
	was := state(t, env, ns, db)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--plan", "gold"}, "use one of hobby, standard, pro"},
		{[]string{}, "--plan is required"},
		{[]string{"--plan", "standard", "--storage", "2Gi"}, "stackblaze db resize tier"},
		{[]string{"--plan", "standard"}, "ResourceQuota small allows 1Gi"},
	} {
		r := env.Run(t, ns, append([]string{"db", "update", db}, tc.args...)...)
		if r.Code != 2 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("update %v: exit %d, want 2 and %q\n%s", tc.args, r.Code, tc.want, r.Stderr)
		}
	}
	if now := state(t, env, ns, db); now != was {
		t.Errorf("a refused update changed the database: %s, then %s", was, now)
	}
	if err := env.Client.CoreV1().ResourceQuotas(ns).Delete(ctx, "small", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// hobby → standard.
	r := env.Run(t, ns, "db", "update", db, "--plan", "standard", "-o", "json")
	if r.Code != 0 {
		t.Fatalf("update --plan standard: exit %d\n%s", r.Code, r.Stderr)
	}
	var res database.Updated
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || !res.Restarted || res.From != "hobby" || res.To != "standard" ||
		!strings.Contains(strings.Join(res.Changes, "\n"), "memory 512Mi → 2Gi") {
		t.Errorf("update -o json: %v\n%s", err, r.Stdout)
	}
	if got := memoryLimit(t, env, ns, db); got != "2147483648" {
		t.Errorf("the container's memory limit on standard: %s", got)
	}
	pod, err := env.Client.CoreV1().Pods(ns).Get(ctx, database.PodName(db), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lim := pod.Spec.Containers[0].Resources.Limits; lim.Cpu().String() != "2" || lim.Memory().String() != "2Gi" {
		t.Errorf("the pod's limits on standard: %v", lim)
	}
	if got := env.SQL(t, ns, db, settings); got != "5min|512MB" {
		t.Errorf("standard's settings: %s", got)
	}
	if got := env.SQL(t, ns, db, "select count(*), sum(n) from t"); got != "1000|500500" {
		t.Errorf("rows on standard: %s", got)
	}
	// WAL is archived on the new plan: a finished segment reaches the repository.
	// (pg_switch_wal is the superuser's: run in the container.)
	super := func(query string) string {
		return strings.TrimSpace(env.MustExec(t, ns, database.PodName(db), "psql", "-X", "-q", "-At", "-U", "postgres", "-d", "postgres", "-c", query))
	}
	env.SQL(t, ns, db, "insert into t values (1001)")
	seg := super("select pg_walfile_name(pg_switch_wal())")
	archived := false
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline) && !archived; {
		archived = super("select coalesce(last_archived_wal >= '"+seg+"', false) from pg_stat_archiver") == "t"
	}
	if !archived {
		t.Errorf("segment %s was not archived on plan standard: %s", seg, super("select * from pg_stat_archiver"))
	}
	r = env.Run(t, ns, "db", "status", db, "-o", "json")
	var st struct {
		Plan    string `json:"plan"`
		Backups struct {
			PITR bool `json:"pointInTimeRecovery"`
		} `json:"backups"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil || st.Plan != "standard" || !st.Backups.PITR {
		t.Errorf("status on standard: %v\n%s", err, r.Stdout)
	}

	// The same plan again: nothing to do, no restart.
	was = state(t, env, ns, db)
	if r := env.Run(t, ns, "db", "update", db, "--plan", "standard"); r.Code != 0 || !strings.Contains(r.Stdout, "already on plan standard") {
		t.Errorf("update to the same plan: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if now := state(t, env, ns, db); now != was {
		t.Errorf("an update to the same plan changed the database: %s, then %s", was, now)
	}

	// Back to hobby: point-in-time recovery off, WAL still archived without a timeout.
	if r := env.Run(t, ns, "db", "update", db, "--plan", "hobby"); r.Code != 0 || !strings.Contains(r.Stdout, "point-in-time recovery off") {
		t.Fatalf("update --plan hobby: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if got := env.SQL(t, ns, db, settings+", current_setting('archive_mode')"); got != "0|128MB|on" {
		t.Errorf("hobby's settings again: %s", got)
	}
	if got := memoryLimit(t, env, ns, db); got != "536870912" {
		t.Errorf("the container's memory limit on hobby: %s", got)
	}

	// A stopped database takes the plan when it starts.
	if r := env.Run(t, ns, "db", "scale", db, "--replicas", "0"); r.Code != 0 {
		t.Fatalf("scale 0: exit %d\n%s", r.Code, r.Stderr)
	}
	if r := env.Run(t, ns, "db", "update", db, "--plan", "standard", "-o", "json"); r.Code != 0 || !strings.Contains(r.Stdout, `"restarted": false`) {
		t.Fatalf("update of a stopped database: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := env.Run(t, ns, "db", "scale", db, "--replicas", "1"); r.Code != 0 {
		t.Fatalf("scale 1: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := memoryLimit(t, env, ns, db); got != "2147483648" {
		t.Errorf("the memory limit of the started database: %s", got)
	}
	if got := env.SQL(t, ns, db, "select count(*) from t"); got != "1001" {
		t.Errorf("rows at the end: %s", got)
	}
}
