package logs_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// follower is `db logs NAME -f -o json` running as a child process: each line it prints is
// parsed as a database.LogEntry (a line that does not parse fails the test).
type follower struct {
	t       *testing.T
	cmd     *exec.Cmd
	stderr  *bytes.Buffer
	entries chan database.LogEntry
	done    chan struct{}

	mu  sync.Mutex
	all []database.LogEntry
}

func follow(t *testing.T, env *testbed.Env, ns, db string) *follower {
	t.Helper()
	cmd := env.Command(t, ns, "db", "logs", db, "-f", "-o", "json")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	f := &follower{t: t, cmd: cmd, stderr: &bytes.Buffer{}, entries: make(chan database.LogEntry, 100000), done: make(chan struct{})}
	cmd.Stderr = f.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(f.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for sc.Scan() {
			var e database.LogEntry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("db logs -f -o json printed a line that is not a JSON entry: %q: %v", sc.Text(), err)
				continue
			}
			f.mu.Lock()
			f.all = append(f.all, e)
			f.mu.Unlock()
			f.entries <- e
		}
	}()
	t.Cleanup(func() {
		if f.cmd.ProcessState == nil {
			_ = f.cmd.Process.Kill()
			<-f.done
			_ = f.cmd.Wait()
		}
	})
	return f
}

// next reads the follower's entries until one satisfies want, and returns it with the entries
// before it; it fails the test when ctx ends first or the follower stops.
func (f *follower) next(ctx context.Context, what string, want func(database.LogEntry) bool) (database.LogEntry, []database.LogEntry) {
	f.t.Helper()
	var before []database.LogEntry
	for {
		select {
		case e := <-f.entries:
			if want(e) {
				return e, before
			}
			before = append(before, e)
		case <-f.done:
			f.t.Fatalf("db logs -f ended before %s; stderr:\n%s", what, f.stderr)
		case <-ctx.Done():
			f.t.Fatalf("db logs -f did not show %s (%v); it showed:\n%s\nstderr:\n%s", what, ctx.Err(), dump(before), f.stderr)
		}
	}
}

// stop interrupts the follower as Ctrl-C would: it ends quietly with exit code 130.
func (f *follower) stop() {
	f.t.Helper()
	if err := f.cmd.Process.Signal(os.Interrupt); err != nil {
		f.t.Fatal(err)
	}
	<-f.done
	err := f.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || strings.Contains(f.stderr.String(), "error") {
		f.t.Errorf("db logs -f after Ctrl-C: %v, stderr:\n%s", err, f.stderr)
	}
}

func dump(es []database.LogEntry) string {
	var b strings.Builder
	for _, e := range es {
		j, _ := json.Marshal(e)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func message(s string) func(database.LogEntry) bool {
	return func(e database.LogEntry) bool { return strings.Contains(e.Message, s) }
}

func marker(s string) func(database.LogEntry) bool {
	return func(e database.LogEntry) bool {
		return e.Source == database.LogSourceStackblaze && strings.Contains(e.Message, s)
	}
}

// jsonLines runs db logs with args and -o json, and parses every line of its output.
func jsonLines(t *testing.T, env *testbed.Env, ns string, args ...string) []database.LogEntry {
	t.Helper()
	r := env.Run(t, ns, append(append([]string{"db", "logs"}, args...), "-o", "json")...)
	if r.Code != 0 {
		t.Fatalf("db logs %v -o json: exit %d\n%s", args, r.Code, r.Stderr)
	}
	var es []database.LogEntry
	for _, l := range strings.Split(strings.TrimSuffix(r.Stdout, "\n"), "\n") {
		var e database.LogEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("db logs %v -o json: a line is not a JSON entry: %q: %v", args, l, err)
		}
		es = append(es, e)
	}
	return es
}

func ready(p *corev1.Pod) bool {
	if p == nil || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func restarts(p *corev1.Pod) int32 {
	for _, c := range p.Status.ContainerStatuses {
		if c.Name == database.ContainerName {
			return c.RestartCount
		}
	}
	return 0
}

// db logs on the real node: a failing statement's error with its level and statement, in text
// and JSON; --level error shows errors only; -f follows the log across a pod deletion and a crash
// (the new container's start shows); --previous after a crash shows the crashed container's last
// lines; a stopped database is said to be so, and -f waits for it; --backups shows a backup job's
// log.
func TestE2ELogs(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	const db = "logs"
	pod := database.PodName(db)
	if r := env.Run(t, ns, "db", "create", db, "--timeout", "4m"); r.Code != 0 {
		t.Fatalf("db create: exit %d\n%s", r.Code, r.Stderr)
	}
	f := follow(t, env, ns, db)
	f.next(testbed.Context(t, 2*time.Minute), "the server's start", message("database system is ready to accept connections"))

	// A failing statement, on two lines.
	r := env.Run(t, ns, "db", "run", db, "--", "psql", "-X", "-c", "select *\nfrom no_such_table")
	if r.Code == 0 || !strings.Contains(r.Stderr, `relation "no_such_table" does not exist`) {
		t.Fatalf("the failing statement: exit %d\n%s", r.Code, r.Stderr)
	}
	// -f shows it (so it is in the container's log for the commands below).
	e, _ := f.next(testbed.Context(t, 2*time.Minute), "the failing statement's error", message(`relation "no_such_table" does not exist`))
	if e.Level != "ERROR" || e.SQLState != "42P01" || e.Statement != "select *\nfrom no_such_table" || e.User != database.RoleName(db) ||
		e.Database != database.RoleName(db) || e.Source != database.LogSourcePostgres || e.PID == 0 || e.Pod != pod || e.Time.IsZero() {
		t.Errorf("the error as -f -o json shows it: %+v", e)
	}

	// Text: the error's line, its level and session, and its statement on two lines.
	r = env.Run(t, ns, "db", "logs", db)
	if r.Code != 0 {
		t.Fatalf("db logs: exit %d\n%s", r.Code, r.Stderr)
	}
	errLine := regexp.MustCompile(`(?m)^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}  ERROR    relation "no_such_table" does not exist at character \d+  \(logs@logs, 42P01\)\n  statement: select \*\n             from no_such_table\n`)
	if !errLine.MatchString(r.Stdout) {
		t.Errorf("db logs does not show the error with its level and statement:\n%s", r.Stdout)
	}
	if !regexp.MustCompile(`(?m)^\S+ \S+  LOG      database system is ready to accept connections$`).MatchString(r.Stdout) || strings.Contains(r.Stdout, "\x1b[") {
		t.Errorf("db logs (no terminal, CI): the server's start at level LOG, no colour:\n%s", r.Stdout)
	}

	// -o json: every line an entry; the error among them, with other levels.
	all := jsonLines(t, env, ns, db)
	levels := map[string]int{}
	found := false
	for _, e := range all {
		levels[e.Level]++
		found = found || e.Level == "ERROR" && strings.Contains(e.Message, "no_such_table") && e.Statement != ""
	}
	if !found || levels["LOG"] == 0 {
		t.Errorf("db logs -o json: the error found %v, levels %v", found, levels)
	}
	// --level error: only errors (and worse), the statement's among them.
	errs := jsonLines(t, env, ns, db, "--level", "error")
	found = false
	for _, e := range errs {
		if database.LogLevelRank(e.Level) < database.LogLevelRank("ERROR") {
			t.Errorf("--level error shows an entry of level %q: %+v", e.Level, e)
		}
		found = found || strings.Contains(e.Message, "no_such_table")
	}
	if !found || len(errs) >= len(all) {
		t.Errorf("--level error: %d of %d entries, the error found %v", len(errs), len(all), found)
	}
	if tail := jsonLines(t, env, ns, db, "--tail", "1", "--level", "error"); len(tail) != 1 || tail[0].Level != "ERROR" {
		t.Errorf("--tail 1 --level error: %+v", tail)
	}
	r = env.Run(t, ns, "db", "logs", db, "--level", "loud")
	if r.Code != 2 || !strings.Contains(r.Stderr, "use one of debug, info, warning, error, fatal") {
		t.Errorf("--level loud: exit %d, want 2 and the levels\n%s", r.Code, r.Stderr)
	}
	r = env.Run(t, ns, "db", "logs", db, "--previous")
	if r.Code != 1 || !strings.Contains(r.Stderr, "has no previous container") {
		t.Errorf("--previous before any restart: exit %d\n%s", r.Code, r.Stderr)
	}

	// -f across a deletion of the pod: the old container's fast shutdown, a word that the pod was
	// created again, and the new container's start.
	ctx := testbed.Context(t, 5*time.Minute)
	old, err := env.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, before := f.next(ctx, "that the pod was created again", marker("was created again: following the new container"))
	shutdown := false
	for _, e := range before {
		shutdown = shutdown || e.Message == "received fast shutdown request"
	}
	if !shutdown {
		t.Errorf("-f did not show the old container's shutdown before the new container:\n%s", dump(before))
	}
	f.next(ctx, "the new container's start", message("database system is ready to accept connections"))
	p, err := testbed.WaitPod(ctx, env.Client, ns, pod, func(p *corev1.Pod) bool { return p != nil && p.UID != old.UID && ready(p) })
	if err != nil {
		t.Fatal(err)
	}

	// A crash: with restart_after_crash off, a killed server process makes PostgreSQL (PID 1) exit
	// with 1, and the kubelet restarts the container.
	ctx = testbed.Context(t, 5*time.Minute)
	super := func(args ...string) string {
		return env.MustExec(t, ns, pod, append([]string{"psql", "-X", "-q", "-At", "-U", "postgres", "-d", "postgres"}, args...)...)
	}
	super("-c", "alter system set restart_after_crash = off", "-c", "select pg_reload_conf()")
	f.next(ctx, "the server taking the setting", message(`parameter "restart_after_crash" changed to "off"`))
	env.MustExec(t, ns, pod, "sh", "-c", `kill -9 "$(psql -X -At -U postgres -d postgres -c "select pid from pg_stat_activity where backend_type = 'checkpointer'")"`)
	f.next(ctx, "that the container restarted", marker("restarted (exit code 1, Error): following the new container"))
	f.next(ctx, "the restarted container's start", message("database system is ready to accept connections"))
	p, err = testbed.WaitPod(ctx, env.Client, ns, pod, func(q *corev1.Pod) bool { return q != nil && q.UID == p.UID && restarts(q) > 0 && ready(q) })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Status.ContainerStatuses {
		if lt := c.LastTerminationState.Terminated; c.Name == database.ContainerName && (lt == nil || lt.ExitCode != 1) {
			t.Errorf("the crashed container's end: %+v", c.LastTerminationState)
		}
	}
	// --previous: the crashed container's last lines say why.
	prev := jsonLines(t, env, ns, db, "--previous")
	var tail []string
	for _, e := range prev[max(len(prev)-6, 0):] {
		tail = append(tail, e.Message)
	}
	// (PostgreSQL 17 quotes the setting's name; 15 does not.)
	crashEnd := regexp.MustCompile(`shutting down because "?restart_after_crash"? is off`)
	if last := strings.Join(tail, "\n"); !strings.Contains(last, "checkpointer process (PID") || !strings.Contains(last, "was terminated by signal 9: Killed") ||
		!crashEnd.MatchString(last) {
		t.Errorf("--previous does not end with the crash:\n%s", last)
	}
	r = env.Run(t, ns, "db", "logs", db, "--previous", "--tail", "3")
	if r.Code != 0 || len(strings.Split(strings.TrimSpace(r.Stdout), "\n")) != 3 || !regexp.MustCompile(`(?m)^\S+ \S+  LOG      `+crashEnd.String()+`$`).MatchString(r.Stdout) {
		t.Errorf("--previous --tail 3: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	super("-c", "alter system reset restart_after_crash", "-c", "select pg_reload_conf()")
	f.stop()

	// A stopped database: said so; -f waits for it and shows its start.
	ctx = testbed.Context(t, 5*time.Minute)
	if r := env.Run(t, ns, "db", "scale", db, "--replicas", "0"); r.Code != 0 {
		t.Fatalf("scale 0: exit %d\n%s", r.Code, r.Stderr)
	}
	r = env.Run(t, ns, "db", "logs", db)
	if r.Code != 1 || !strings.Contains(r.Stderr, "database logs is stopped (scaled to 0): it has no pod, so no log") {
		t.Errorf("db logs of a stopped database: exit %d\n%s", r.Code, r.Stderr)
	}
	f = follow(t, env, ns, db)
	f.next(ctx, "that the database is stopped", marker("does not exist (database logs is stopped, or starting): waiting for it"))
	if r := env.Run(t, ns, "db", "scale", db, "--replicas", "1"); r.Code != 0 {
		t.Fatalf("scale 1: exit %d\n%s", r.Code, r.Stderr)
	}
	f.next(ctx, "the started database", message("database system is ready to accept connections"))
	f.stop()

	// --backups: the log of a backup job's pod (the daily backup's Job, run now).
	ctx = testbed.Context(t, 5*time.Minute)
	cj, err := env.Client.BatchV1().CronJobs(ns).Get(ctx, database.BackupScheduleName(db), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: db + "-backup-now", Labels: cj.Spec.JobTemplate.Labels}, Spec: cj.Spec.JobTemplate.Spec}
	if _, err := env.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	jp, err := testbed.WaitPodSelected(ctx, env.Client, ns, "job-name="+job.Name, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	if err != nil {
		t.Fatal(err)
	}
	r = env.Run(t, ns, "db", "logs", db, "--backups")
	if r.Code != 0 || !strings.Contains(r.Stdout, "==> pod "+jp.Name+" (job "+job.Name+", Succeeded, created ") || !strings.Contains(r.Stdout, "✔ Backup ") {
		t.Errorf("db logs --backups: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, e := range jsonLines(t, env, ns, db, "--backups") {
		if e.Pod != jp.Name || e.Source != database.LogSourceBackup || e.Time.IsZero() {
			t.Errorf("--backups -o json: %+v", e)
		}
	}
}
