package backup_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/testbed"
)

type listDoc struct {
	Backups []struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	} `json:"backups"`
	Window *struct {
		Earliest string `json:"earliest"`
		Latest   string `json:"latest"`
	} `json:"recoverableWindow"`
}

// superuserSQL runs sql as the superuser in database db's pod (kubectl exec psql).
func superuserSQL(t *testing.T, env *testbed.Env, ns, db, sql string) string {
	t.Helper()
	out, err := exec.Command(env.Kubectl(), "--kubeconfig", env.Kubeconfig, "-n", ns, "exec", db+"-0", "--",
		"psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("psql %q: %v: %s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// waitArchived switches to a new WAL segment and waits until the server's archiver reports what
// archived says (SQL over pg_stat_archiver that is true once the WAL is in the repository). No
// event announces it: the archiver's statistics are read again until then, for up to a minute.
func waitArchived(t *testing.T, psql func(string) string, archived string) {
	t.Helper()
	psql("select pg_switch_wal()")
	deadline := time.Now().Add(time.Minute)
	for psql("select coalesce("+archived+", false) from pg_stat_archiver") != "t" {
		if time.Now().After(deadline) {
			t.Fatalf("WAL not archived (%s): %s", archived, psql("select last_failed_wal, last_failed_time from pg_stat_archiver"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestE2EBackupCreateListRestoreSchedule(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	run := func(args ...string) testbed.Result {
		t.Helper()
		r := env.Run(t, ns, args...)
		return r
	}
	must := func(args ...string) testbed.Result {
		t.Helper()
		r := run(args...)
		if r.Code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, r.Code, r.Stdout, r.Stderr)
		}
		return r
	}
	psqlIn := func(db, sql string) string { t.Helper(); return superuserSQL(t, env, ns, db, sql) }
	psql := func(sql string) string { t.Helper(); return psqlIn("bk", sql) }
	// asApp runs psql as the database's application role, through a tunnel (db run).
	asApp := func(db, sql string) string {
		t.Helper()
		return strings.TrimSpace(must("db", "run", db, "--", "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql).Stdout)
	}
	must("db", "create", "bk", "--plan", "standard", "--storage", "1Gi")
	psql("create table t (i int)")
	psql("insert into t select generate_series(1, 10)")
	asApp("bk", "create table app_t (i int); insert into app_t values (1)")
	// create prepared the repository: WAL is archived before any backup was taken.
	waitArchived(t, psql, "archived_count > 0")

	c := must("db", "backup", "create", "bk", "-o", "json")
	var created struct {
		Backup struct {
			ID   string `json:"id"`
			Size int64  `json:"sizeBytes"`
		} `json:"backup"`
		Duration float64 `json:"durationSeconds"`
	}
	if err := json.Unmarshal([]byte(c.Stdout), &created); err != nil || created.Backup.ID == "" || created.Backup.Size == 0 {
		t.Fatalf("backup create -o json: %v\n%s", err, c.Stdout)
	}
	psql("insert into t select generate_series(11, 20)")

	l := must("db", "backup", "list", "bk", "-o", "json")
	var doc listDoc
	if err := json.Unmarshal([]byte(l.Stdout), &doc); err != nil {
		t.Fatalf("list is not one JSON document: %v\n%s", err, l.Stdout)
	}
	if len(doc.Backups) != 1 || doc.Backups[0].ID != created.Backup.ID || doc.Window == nil {
		t.Fatalf("list: %+v", doc)
	}

	bad := run("db", "restore", "bk", "--backup", "20000101-000000F", "--yes")
	if bad.Code == 0 || !strings.Contains(bad.Stderr, created.Backup.ID) {
		t.Fatalf("unknown ID: exit %d, stderr should name %s:\n%s", bad.Code, created.Backup.ID, bad.Stderr)
	}
	old := run("db", "restore", "bk", "--to-time", "2000-01-01T00:00:00Z", "--yes")
	if old.Code != 2 || !strings.Contains(old.Stderr, "recoverable window is "+doc.Window.Earliest[:10]) {
		t.Fatalf("out-of-window time: exit %d:\n%s", old.Code, old.Stderr)
	}

	// Shell completion offers the backup IDs for restore --backup (cobra's __complete is what
	// the completion scripts call).
	// __complete must come first on the command line, so the global flags go after it.
	comp, err := exec.Command(env.Binary(t), "__complete", "db", "restore", "bk",
		"--kubeconfig", env.Kubeconfig, "-n", ns, "--backup", "").Output()
	if err != nil || !strings.Contains(string(comp), created.Backup.ID) {
		t.Fatalf("completion of restore --backup does not offer %s (%v):\n%s", created.Backup.ID, err, comp)
	}
	// Into a new database: the source keeps running untouched, the new one has exactly what the
	// backup held, its own roles, credentials and backups.
	podUID := func() string {
		t.Helper()
		p, err := env.Client.CoreV1().Pods(ns).Get(context.Background(), "bk-0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(p.UID)
	}
	srcPod := podUID()
	into := must("db", "restore", "bk", "--backup", created.Backup.ID, "--into", "bk-copy", "-o", "json")
	var intoDoc struct{ Database, Into, Backup string }
	if err := json.Unmarshal([]byte(into.Stdout), &intoDoc); err != nil || intoDoc.Into != "bk-copy" || intoDoc.Backup != created.Backup.ID {
		t.Fatalf("restore --into -o json: %v\n%s", err, into.Stdout)
	}
	if podUID() != srcPod {
		t.Error("restore --into restarted the source's pod")
	}
	if got := psql("select count(*) from t"); got != "20" {
		t.Errorf("source after restore --into: %s rows, want 20", got)
	}
	if got := psqlIn("bk-copy", "select count(*) from t"); got != "10" {
		t.Errorf("bk-copy: %s rows, want the backup's 10", got)
	}
	// The application's table, owned by the source's role, belongs to the new database's.
	if got := asApp("bk-copy", "select current_user || ' ' || count(*) from app_t"); got != "bk_copy 1" {
		t.Errorf("bk-copy as its application role: %q, want \"bk_copy 1\"", got)
	}
	if got := psqlIn("bk-copy", "select string_agg(rolname, ',' order by rolname) from pg_roles where rolname like 'bk%'"); got != "bk_copy,bk_copy_b" {
		t.Errorf("roles of bk-copy: %s", got)
	}
	must("db", "backup", "create", "bk-copy")
	if again := run("db", "restore", "bk", "--backup", created.Backup.ID, "--into", "bk-copy"); again.Code != 6 || !strings.Contains(again.Stderr, "already exists") {
		t.Errorf("restore --into an existing database: exit %d\n%s", again.Code, again.Stderr)
	}

	must("db", "restore", "bk", "--backup", created.Backup.ID, "--yes")
	if got := psql("select count(*) from t"); got != "10" {
		t.Fatalf("after in-place restore of %s: %s rows, want 10", created.Backup.ID, got)
	}

	must("db", "backup", "schedule", "bk", "--at", "02:30", "--image", "example.org/stackblaze:1.2.3")
	out, err := exec.Command(env.Kubectl(), "--kubeconfig", env.Kubeconfig, "-n", ns, "get", "cronjob", "bk-backup", "-o",
		"jsonpath={.spec.schedule}|{.spec.jobTemplate.spec.template.spec.containers[0].image}|{.spec.jobTemplate.spec.template.spec.serviceAccountName}").CombinedOutput()
	if err != nil || string(out) != "30 2 * * *|example.org/stackblaze:1.2.3|bk-backup" {
		t.Fatalf("cronjob: %v %s", err, out)
	}
	sa := "system:serviceaccount:" + ns + ":bk-backup"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "pods/bk-0"}, "no"},
		{[]string{"create", "pods/bk-0", "--subresource=exec"}, "yes"},
		{[]string{"get", "statefulsets.apps/bk"}, "yes"},
		{[]string{"get", "pods/other-0"}, "no"},
		{[]string{"create", "pods/other-0", "--subresource=exec"}, "no"},
		{[]string{"get", "secrets/bk-superuser"}, "no"},
		{[]string{"list", "pods"}, "no"},
		{[]string{"delete", "pods/bk-0"}, "no"},
		{[]string{"patch", "statefulsets.apps/bk"}, "no"},
	} {
		args := append([]string{"--kubeconfig", env.Kubeconfig, "-n", ns, "auth", "can-i", "--as=" + sa}, c.args...)
		out, _ := exec.Command(env.Kubectl(), args...).CombinedOutput()
		if strings.TrimSpace(string(out)) != c.want {
			t.Errorf("can-i %v: %s, want %s", c.args, out, c.want)
		}
	}
}

// withBackup makes, in a namespace of its own, a database called name whose table t holds 1, 2
// and 3, and takes a backup of it. must runs the CLI there and fails the test on a non-zero exit.
func withBackup(t *testing.T, name string) (env *testbed.Env, ns string, must func(...string) testbed.Result, backupID string) {
	t.Helper()
	env = testbed.Require(t)
	ns = env.Namespace(t, nil)
	must = func(args ...string) testbed.Result {
		t.Helper()
		r := env.Run(t, ns, args...)
		if r.Code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, r.Code, r.Stdout, r.Stderr)
		}
		return r
	}
	must("db", "create", name, "--storage", "1Gi")
	superuserSQL(t, env, ns, name, "create table t (i int); insert into t values (1), (2), (3)")
	var created struct {
		Backup struct{ ID string } `json:"backup"`
	}
	if err := json.Unmarshal([]byte(must("db", "backup", "create", name, "-o", "json").Stdout), &created); err != nil || created.Backup.ID == "" {
		t.Fatalf("backup create: %v", err)
	}
	return env, ns, must, created.Backup.ID
}

// A restore --into that fails once the new database is being made deletes it again, leaves the
// source as it was, and says so. The failure is a real one: the namespace's quota leaves no room
// for the new database's pod, so it never comes up within --timeout.
func TestE2ERestoreIntoFailureDeletesTheCopy(t *testing.T) {
	env, ns, must, backupID := withBackup(t, "src")
	ctx := context.Background()
	srcPod, err := env.Client.CoreV1().Pods(ns).Get(ctx, "src-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// One pod at most: the source's.
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "one-pod"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}}}
	if _, err := env.Client.CoreV1().ResourceQuotas(ns).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Until the quota controller has counted the pods, admission cannot enforce the quota.
	deadline := time.Now().Add(60 * time.Second)
	for {
		q, err := env.Client.CoreV1().ResourceQuotas(ns).Get(ctx, "one-pod", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if used, ok := q.Status.Used[corev1.ResourcePods]; ok && used.Value() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quota's usage was never counted: %+v", q.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}

	r := env.Run(t, ns, "db", "restore", "src", "--backup", backupID, "--into", "src-copy", "--timeout", "20s")
	if r.Code != 7 || !strings.Contains(r.Stderr, "src is unchanged and src-copy was deleted again") {
		t.Fatalf("restore --into without room for the new pod: exit %d, want 7 (timeout) and the state said:\n%s", r.Code, r.Stderr)
	}
	// Nothing of src-copy is left (the volume claims go once no pod holds them).
	if _, err := env.Client.AppsV1().StatefulSets(ns).Get(ctx, "src-copy", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the StatefulSet src-copy is still there (%v)", err)
	}
	if _, err := env.Client.BatchV1().CronJobs(ns).Get(ctx, "src-copy-backup", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the backup CronJob of src-copy is still there (%v)", err)
	}
	secrets, err := env.Client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if strings.HasPrefix(s.Name, "src-copy") {
			t.Errorf("secret %s of src-copy is still there", s.Name)
		}
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		claims, err := env.Client.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, c := range claims.Items {
			if strings.HasSuffix(c.Name, "-src-copy-0") && c.DeletionTimestamp == nil {
				left = append(left, c.Name)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("volume claims of src-copy left: %v", left)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The source was never touched: same pod, same rows.
	pod, err := env.Client.CoreV1().Pods(ns).Get(ctx, "src-0", metav1.GetOptions{})
	if err != nil || pod.UID != srcPod.UID {
		t.Errorf("the source's pod was replaced (%v)", err)
	}
	if got := superuserSQL(t, env, ns, "src", "select count(*) from t"); got != "3" {
		t.Errorf("the source has %s rows, want 3", got)
	}
	// And the same command goes through once there is room.
	if err := env.Client.CoreV1().ResourceQuotas(ns).Delete(ctx, "one-pod", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	must("db", "restore", "src", "--backup", backupID, "--into", "src-copy")
	if got := superuserSQL(t, env, ns, "src-copy", "select count(*) from t"); got != "3" {
		t.Errorf("src-copy has %s rows, want 3", got)
	}
}

// An in-place restore whose restored data does not come up within --timeout puts the original
// data back and restarts the database on it, and exits 7. With --timeout 1ms the wait runs out at
// once, after the restored data has been swapped in: what is tested is the way back.
func TestE2ERestoreInPlaceTimeoutPutsTheDataBack(t *testing.T) {
	env, ns, must, backupID := withBackup(t, "back")
	superuserSQL(t, env, ns, "back", "insert into t values (4)")

	r := env.Run(t, ns, "db", "restore", "back", "--backup", backupID, "--yes", "--timeout", "1ms")
	if r.Code != 7 || !strings.Contains(r.Stderr, "the original data was put back") {
		t.Fatalf("in-place restore past --timeout: exit %d, want 7 and the original data put back:\n%s", r.Code, r.Stderr)
	}
	// The database comes back on its own data: the row written after the backup is there.
	must("db", "run", "back", "--timeout", "2m", "--", "true")
	if got := superuserSQL(t, env, ns, "back", "select count(*) from t"); got != "4" {
		t.Fatalf("after the way back: %s rows, want the original 4", got)
	}
	// And it still works as a database: it writes, and a restore that has time goes through.
	superuserSQL(t, env, ns, "back", "insert into t values (5)")
	must("db", "restore", "back", "--backup", backupID, "--yes")
	if got := superuserSQL(t, env, ns, "back", "select count(*) from t"); got != "3" {
		t.Fatalf("after a restore with time: %s rows, want the backup's 3", got)
	}
}
