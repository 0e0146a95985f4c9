package database

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// sampleLog is a database container's log as PostgreSQL 15 with LogLinePrefix, our entrypoint and
// pgBackRest (archive_command, console output) wrote it, copied from a real server.
const sampleLog = `entrypoint: initialising /var/lib/postgresql/data/pgdata
entrypoint: running /docker-entrypoint-initdb.d/10-app-role.sh
entrypoint: initialised
2026-11-30 07:39:24.295 UTC [21152] 00000 LOG:  starting PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14+deb12u1) 12.2.0, 64-bit
2026-11-30 07:39:24.307 UTC [21152] 00000 LOG:  database system is ready to accept connections
2026-11-30 07:39:29.171 UTC [21594] 00000 [unknown]@[unknown] LOG:  connection received: host=[local]
2026-11-30 07:39:29.175 UTC [21594] 42P01 app@shop ERROR:  relation "no_such_table" does not exist at character 15
2026-11-30 07:39:29.175 UTC [21594] 42P01 app@shop STATEMENT:  select * from no_such_table
2026-11-30 07:39:29.220 UTC [21597] 42703 app@shop ERROR:  column "missing_col" does not exist at character 10
2026-11-30 07:39:29.220 UTC [21597] 42703 app@shop STATEMENT:  select
	  missing_col
	from pg_class
2026-11-30 07:39:29.265 UTC [21600] 01000 app@shop WARNING:  careful: 42
2026-11-30 07:39:29.265 UTC [21600] 01000 app@shop DETAIL:  line one
	line two
2026-11-30 07:39:29.265 UTC [21600] 01000 app@shop HINT:  a hint
2026-11-30 07:39:29.265 UTC [21600] 01000 app@shop CONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE
2026-11-30 07:39:29.311 UTC [21603] 42P01 app@shop ERROR:  relation "nope" does not exist at character 16
2026-11-30 07:39:29.311 UTC [21603] 42P01 app@shop QUERY:  (select x from nope)
2026-11-30 07:39:29.311 UTC [21603] 42P01 app@shop CONTEXT:  PL/pgSQL function f() line 1 at RETURN
2026-11-30 07:39:29.311 UTC [21603] 42P01 app@shop STATEMENT:  select f();
2026-11-30 07:39:29.371 P00   INFO: archive-push command begin 2.45: [pg_wal/000000010000000000000001] --stanza=shop
2026-11-30 07:39:29.372 P00  ERROR: [103]: unable to find a valid repository:
                                    repo1: [FileMissingError] unable to load info file '/var/lib/postgresql/backup/archive/shop/archive.info'
                                    HINT: archive.info cannot be opened but is required to push/get WAL segments.
                                    HINT: has a stanza-create been performed?
2026-11-30 07:39:29.372 P00   INFO: archive-push command end: aborted with exception [103]
2026-11-30 07:39:29.374 UTC [21175] 00000 LOG:  archive command failed with exit code 103
2026-11-30 07:39:29.374 UTC [21175] 00000 DETAIL:  The failed archive command was: exec pgbackrest --stanza=shop archive-push "pg_wal/000000010000000000000001"
2026-11-30 07:39:31.410 UTC [21175] 01000 WARNING:  archiving write-ahead log file "000000010000000000000001" failed too many times, will try again later
WARN: unable to check pg1: [DbConnectError] unable to connect
2026-11-30 07:39:29.424 UTC [21610] 3D000 app@nodb FATAL:  database "nodb" does not exist
2026-11-30 07:39:50.632 UTC [22938] 00000 LOG:  checkpointer process (PID 22943) was terminated by signal 9: Killed
2026-11-30 07:39:50.635 UTC [22938] 00000 LOG:  shutting down because restart_after_crash is off
psql:/docker-entrypoint-initdb.d/20-extra.sql:3: NOTICE:  extension "x" already exists, skipping
`

// brief is an entry in a line a test compares.
func brief(e LogEntry) string {
	s := fmt.Sprintf("%s|%s|%d|%s|%s@%s|%s", e.Source, e.Level, e.PID, e.SQLState, e.User, e.Database, e.Message)
	for _, f := range []struct{ k, v string }{{"detail", e.Detail}, {"hint", e.Hint}, {"context", e.Context}, {"query", e.Query}, {"statement", e.Statement}} {
		if f.v != "" {
			s += "|" + f.k + "=" + f.v
		}
	}
	return s
}

func parseAll(t *testing.T, log string) []LogEntry {
	t.Helper()
	var got []LogEntry
	if err := ParseLog(strings.NewReader(log), "shop-0", func(e LogEntry) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestParseLogSample(t *testing.T) {
	got := parseAll(t, sampleLog)
	want := []string{
		"entrypoint||0||@|initialising /var/lib/postgresql/data/pgdata",
		"entrypoint||0||@|running /docker-entrypoint-initdb.d/10-app-role.sh",
		"entrypoint||0||@|initialised",
		"postgres|LOG|21152|00000|@|starting PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14+deb12u1) 12.2.0, 64-bit",
		"postgres|LOG|21152|00000|@|database system is ready to accept connections",
		"postgres|LOG|21594|00000|@|connection received: host=[local]",
		`postgres|ERROR|21594|42P01|app@shop|relation "no_such_table" does not exist at character 15|statement=select * from no_such_table`,
		"postgres|ERROR|21597|42703|app@shop|column \"missing_col\" does not exist at character 10|statement=select\n  missing_col\nfrom pg_class",
		"postgres|WARNING|21600|01000|app@shop|careful: 42|detail=line one\nline two|hint=a hint|context=PL/pgSQL function inline_code_block line 1 at RAISE",
		`postgres|ERROR|21603|42P01|app@shop|relation "nope" does not exist at character 16|context=PL/pgSQL function f() line 1 at RETURN|query=(select x from nope)|statement=select f();`,
		"pgbackrest|INFO|0||@|archive-push command begin 2.45: [pg_wal/000000010000000000000001] --stanza=shop",
		"pgbackrest|ERROR|0||@|[103]: unable to find a valid repository:\nrepo1: [FileMissingError] unable to load info file '/var/lib/postgresql/backup/archive/shop/archive.info'|hint=archive.info cannot be opened but is required to push/get WAL segments.\nhas a stanza-create been performed?",
		"pgbackrest|INFO|0||@|archive-push command end: aborted with exception [103]",
		`postgres|LOG|21175|00000|@|archive command failed with exit code 103|detail=The failed archive command was: exec pgbackrest --stanza=shop archive-push "pg_wal/000000010000000000000001"`,
		`postgres|WARNING|21175|01000|@|archiving write-ahead log file "000000010000000000000001" failed too many times, will try again later`,
		"pgbackrest|WARNING|0||@|unable to check pg1: [DbConnectError] unable to connect",
		`postgres|FATAL|21610|3D000|app@nodb|database "nodb" does not exist`,
		"postgres|LOG|22938|00000|@|checkpointer process (PID 22943) was terminated by signal 9: Killed",
		"postgres|LOG|22938|00000|@|shutting down because restart_after_crash is off",
		`other||0||@|psql:/docker-entrypoint-initdb.d/20-extra.sql:3: NOTICE:  extension "x" already exists, skipping`,
	}
	if len(got) != len(want) {
		for _, e := range got {
			t.Logf("%q", brief(e))
		}
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if b := brief(got[i]); b != want[i] {
			t.Errorf("entry %d:\n got %q\nwant %q", i, b, want[i])
		}
	}
	// The server's time, in UTC; the pod.
	if e := got[6]; !e.Time.Equal(time.Date(2026, 11, 30, 7, 39, 29, 175e6, time.UTC)) || e.Pod != "shop-0" {
		t.Errorf("time and pod of the error: %v %q", e.Time, e.Pod)
	}
	// Lines without a time of their own have none (the runtime's time is not in this log).
	if !got[0].Time.IsZero() {
		t.Errorf("entrypoint line has a time: %v", got[0].Time)
	}
	// pgBackRest's console time is the container's, UTC.
	if e := got[10]; !e.Time.Equal(time.Date(2026, 11, 30, 7, 39, 29, 371e6, time.UTC)) {
		t.Errorf("pgBackRest's time: %v", e.Time)
	}
}

// The log as the API gives it with timestamps: the runtime's time of each line comes first, and
// is the time of lines that have none.
func TestParseLogRuntimeTimestamps(t *testing.T) {
	log := "2026-11-30T07:39:20.000000001Z entrypoint: initialised\n" +
		"2026-11-30T07:39:29.175813204Z 2026-11-30 07:39:29.175 UTC [57] 42P01 app@shop ERROR:  relation \"x\" does not exist\n" +
		"2026-11-30T07:39:29.175813999Z 2026-11-30 07:39:29.175 UTC [57] 42P01 app@shop STATEMENT:  select\n" +
		"2026-11-30T07:39:29.175814000Z \t* from x\n" +
		"2026-11-30T07:39:29.500000000Z ERROR: [041]: unable to open file\n"
	got := parseAll(t, log)
	if len(got) != 3 {
		t.Fatalf("%d entries: %v", len(got), got)
	}
	if !got[0].Time.Equal(time.Date(2026, 11, 30, 7, 39, 20, 1, time.UTC)) || got[0].Message != "initialised" {
		t.Errorf("entrypoint: %+v", got[0])
	}
	if got[1].Statement != "select\n* from x" || !got[1].Time.Equal(time.Date(2026, 11, 30, 7, 39, 29, 175e6, time.UTC)) {
		t.Errorf("error: %+v", got[1])
	}
	if got[2].Source != LogSourcePgBackRest || got[2].Level != "ERROR" || got[2].Message != "[041]: unable to open file" ||
		!got[2].Time.Equal(time.Date(2026, 11, 30, 7, 39, 29, 5e8, time.UTC)) {
		t.Errorf("pgBackRest's standard error: %+v", got[2])
	}
}

// Databases made before LogLinePrefix have PostgreSQL's default "%m [%p] ".
func TestParseLogOldPrefix(t *testing.T) {
	log := `2026-11-30 07:00:00.123 UTC [57] ERROR:  relation "nope" does not exist at character 15
2026-11-30 07:00:00.123 UTC [57] STATEMENT:  select * from nope
2026-11-30 07:00:01.000 GMT [12] LOG:  checkpoint starting: time
2026-11-30 09:00:02.000 +02 [12] LOG:  checkpoint complete: wrote 3 buffers
2026-11-30 07:00:03.000 UTC [58] FATAL:  password authentication failed for user "app"
2026-11-30 07:00:03.000 UTC [58] DETAIL:  Connection matched pg_hba.conf line 100: "host all all 0.0.0.0/0 scram-sha-256"
`
	got := parseAll(t, log)
	want := []string{
		`postgres|ERROR|57||@|relation "nope" does not exist at character 15|statement=select * from nope`,
		"postgres|LOG|12||@|checkpoint starting: time",
		"postgres|LOG|12||@|checkpoint complete: wrote 3 buffers",
		`postgres|FATAL|58||@|password authentication failed for user "app"|detail=Connection matched pg_hba.conf line 100: "host all all 0.0.0.0/0 scram-sha-256"`,
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries: %v", len(got), got)
	}
	for i := range want {
		if b := brief(got[i]); b != want[i] {
			t.Errorf("entry %d:\n got %q\nwant %q", i, b, want[i])
		}
	}
	if !got[2].Time.Equal(time.Date(2026, 11, 30, 7, 0, 2, 0, time.UTC)) {
		t.Errorf("a time at +02 is %v", got[2].Time)
	}
}

// A secondary line of another process than the entry before, and a continuation with no entry
// before it, are entries of their own; a line without a prefix that is not indented is not taken
// for a continuation.
func TestParseLogStrayLines(t *testing.T) {
	log := "\tcontinued from a line cut off\n" +
		"2026-11-30 07:00:00.000 UTC [57] 42P01 a@b ERROR:  boom\n" +
		"2026-11-30 07:00:00.000 UTC [58] 42P01 a@b STATEMENT:  select 1\n" +
		"Segmentation fault\n"
	got := parseAll(t, log)
	want := []string{
		"other||0||@|\tcontinued from a line cut off",
		"postgres|ERROR|57|42P01|a@b|boom",
		"postgres||58|42P01|a@b||statement=select 1",
		"other||0||@|Segmentation fault",
	}
	if len(got) != len(want) {
		t.Fatalf("%d entries: %v", len(got), got)
	}
	for i := range want {
		if b := brief(got[i]); b != want[i] {
			t.Errorf("entry %d:\n got %q\nwant %q", i, b, want[i])
		}
	}
}

// An entry is emitted when the next line shows it is complete, not before: its secondary and
// continuation lines may still come.
func TestParseLogEmitsWhenComplete(t *testing.T) {
	var got []string
	p := newLogParser("p", func(e LogEntry) error {
		got = append(got, brief(e))
		return nil
	})
	step := func(line string, want int) {
		t.Helper()
		if err := p.line(time.Time{}, line); err != nil {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Fatalf("after %q: %d entries emitted, want %d: %v", line, len(got), want, got)
		}
	}
	step("2026-11-30 07:00:00.000 UTC [57] 42601 a@b ERROR:  syntax error at or near \"selec\"", 0)
	step("2026-11-30 07:00:00.000 UTC [57] 42601 a@b STATEMENT:  selec 1,", 0)
	step("\t2", 0)
	step("2026-11-30 07:00:01.000 UTC [12] 00000 LOG:  checkpoint starting: time", 1)
	if got[0] != "postgres|ERROR|57|42601|a@b|syntax error at or near \"selec\"|statement=selec 1,\n2" {
		t.Errorf("entry: %q", got[0])
	}
	if err := p.flush(); err != nil || len(got) != 2 {
		t.Errorf("flush: %v, %d entries", err, len(got))
	}
	// An error from emit stops the parse.
	stop := errors.New("stop")
	err := ParseLog(strings.NewReader(sampleLog), "p", func(LogEntry) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("ParseLog returned %v, want emit's error", err)
	}
}

func TestLogLevels(t *testing.T) {
	for in, want := range map[string]string{"error": "error", "ERROR": "error", "warn": "warning", "Warning": "warning", "log": "info", "notice": "info", "panic": "fatal", "debug": "debug"} {
		if got, err := ParseLogLevel(in); err != nil || got != want {
			t.Errorf("ParseLogLevel(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseLogLevel("loud")
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "use one of debug, info, warning, error, fatal") {
		t.Errorf("ParseLogLevel(loud): %v", err)
	}
	for _, tc := range []struct {
		level string
		shown []string // the minimum levels that show it
	}{
		{"DEBUG2", []string{"debug"}},
		{"LOG", []string{"debug", "info"}},
		{"NOTICE", []string{"debug", "info"}},
		{"", []string{"debug", "info"}},
		{"WARNING", []string{"debug", "info", "warning"}},
		{"ERROR", []string{"debug", "info", "warning", "error"}},
		{"FATAL", []string{"debug", "info", "warning", "error", "fatal"}},
		{"PANIC", []string{"debug", "info", "warning", "error", "fatal"}},
	} {
		var shown []string
		for _, min := range LogLevels {
			if (LogEntry{Level: tc.level}).ShownAt(min) {
				shown = append(shown, min)
			}
		}
		if strings.Join(shown, ",") != strings.Join(tc.shown, ",") {
			t.Errorf("%q shown at %v, want %v", tc.level, shown, tc.shown)
		}
	}
	if !(LogEntry{Source: LogSourceStackblaze}).ShownAt("fatal") {
		t.Error("stackblaze's own entries must always show")
	}
	// The level filter over the sample: only errors and worse.
	var levels []string
	for _, e := range parseAll(t, sampleLog) {
		if e.ShownAt("error") {
			levels = append(levels, e.Level)
		}
	}
	if strings.Join(levels, ",") != "ERROR,ERROR,ERROR,ERROR,FATAL" {
		t.Errorf("levels shown at error: %v", levels)
	}
}

func TestLogEntryJSON(t *testing.T) {
	e := parseAll(t, sampleLog)[6]
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-30T07:39:29.175Z","pod":"shop-0","pid":21594,"level":"ERROR","sqlstate":"42P01","user":"app","database":"shop","message":"relation \"no_such_table\" does not exist at character 15","statement":"select * from no_such_table","source":"postgres"}`
	if string(b) != want {
		t.Errorf("JSON:\n got %s\nwant %s", b, want)
	}
}

// fakeKubelet serves the logs of a database's pod from a fake clientset as the kubelet would: the
// running container's (else the one that ended last), --previous, tail, since; each line
// with its runtime time.
type fakeKubelet struct {
	mu   sync.Mutex
	logs map[string][]string // container ID → lines with the runtime's time
	reqs []corev1.PodLogOptions
}

func (k *fakeKubelet) add(id string, at time.Time, lines ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, l := range lines {
		k.logs[id] = append(k.logs[id], at.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano)+" "+l)
	}
}

func newFakeCluster(t *testing.T, replicas int32, pod *corev1.Pod) (*fake.Clientset, *fakeKubelet) {
	t.Helper()
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "ns", Labels: Labels("shop")},
		Spec: appsv1.StatefulSetSpec{Replicas: &replicas}}
	objs := []runtime.Object{sts}
	if pod != nil {
		objs = append(objs, pod)
	}
	cs := fake.NewClientset(objs...)
	k := &fakeKubelet{logs: map[string][]string{}}
	cs.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "log" {
			return false, nil, nil
		}
		o := a.(k8stesting.GenericAction).GetValue().(*corev1.PodLogOptions)
		obj, err := cs.Tracker().Get(schema.GroupVersionResource{Version: "v1", Resource: "pods"}, "ns", "shop-0")
		if err != nil {
			return true, nil, err
		}
		p := obj.(*corev1.Pod)
		k.mu.Lock()
		defer k.mu.Unlock()
		k.reqs = append(k.reqs, *o)
		id, _ := logContainer(p)
		if o.Previous {
			id = p.Status.ContainerStatuses[0].LastTerminationState.Terminated.ContainerID
		}
		lines := k.logs[id]
		if o.SinceTime != nil {
			var kept []string
			for _, l := range lines {
				if at, _ := splitRuntimeTime(l); !at.Before(o.SinceTime.Time) {
					kept = append(kept, l)
				}
			}
			lines = kept
		}
		if o.TailLines != nil && int(*o.TailLines) < len(lines) {
			lines = lines[len(lines)-int(*o.TailLines):]
		}
		raw := ""
		for _, l := range lines {
			raw += l + "\n"
		}
		return true, &runtime.Unknown{Raw: []byte(raw)}, nil
	})
	return cs, k
}

func dbPod(uid, running string, restarts int32, last string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "shop-0", Namespace: "ns", UID: types.UID(uid), Labels: Labels("shop")}}
	c := corev1.ContainerStatus{Name: ContainerName, RestartCount: restarts}
	if running != "" {
		c.ContainerID = running
		c.State.Running = &corev1.ContainerStateRunning{}
	} else {
		c.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	if last != "" {
		c.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ContainerID: last, ExitCode: 1, Reason: "Error"}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{c}
	return p
}

var t0 = time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)

func TestStreamLogsReadsOnce(t *testing.T) {
	ctx := context.Background()
	cs, k := newFakeCluster(t, 1, dbPod("u1", "containerd://b", 1, "containerd://a"))
	k.add("containerd://a", t0, "2026-11-30 07:00:00.000 UTC [1] 00000 LOG:  received immediate shutdown request")
	k.add("containerd://b", t0.Add(time.Minute), strings.Split(strings.TrimSuffix(sampleLog, "\n"), "\n")...)

	all, err := ReadLogEntries(ctx, cs, "ns", "shop", LogOptions{})
	if err != nil || len(all) != 20 {
		t.Fatalf("all: %d entries, %v", len(all), err)
	}
	if all[0].Time.IsZero() || all[0].Source != LogSourceEntrypoint {
		t.Errorf("the runtime's time is the time of a line without one: %+v", all[0])
	}
	errs, err := ReadLogEntries(ctx, cs, "ns", "shop", LogOptions{MinLevel: "error"})
	if err != nil || len(errs) != 5 {
		t.Fatalf("--level error: %d entries, %v", len(errs), err)
	}
	// The last 3 errors, read from a cut log: more lines are asked for until they are there.
	last, err := ReadLogEntries(ctx, cs, "ns", "shop", LogOptions{MinLevel: "error", Tail: 3})
	if err != nil || len(last) != 3 || !strings.Contains(last[0].Message, `"nope"`) || last[1].Source != LogSourcePgBackRest || last[2].Level != "FATAL" {
		t.Fatalf("--tail 3 --level error: %v, %v", last, err)
	}
	// --tail 2: the last two entries, the first of a cut log not counted.
	two, err := ReadLogEntries(ctx, cs, "ns", "shop", LogOptions{Tail: 2})
	if err != nil || len(two) != 2 || !strings.Contains(two[1].Message, "extension") {
		t.Fatalf("--tail 2: %v, %v", two, err)
	}
	prev, err := ReadLogEntries(ctx, cs, "ns", "shop", LogOptions{Previous: true})
	if err != nil || len(prev) != 1 || prev[0].Message != "received immediate shutdown request" {
		t.Fatalf("--previous: %v, %v", prev, err)
	}
	for _, r := range k.reqs {
		if !r.Timestamps || r.Container != ContainerName || r.Follow {
			t.Errorf("log request %+v", r)
		}
	}

	// An error far back: --tail asks for more lines until it has found it, then for the whole log.
	cs, k = newFakeCluster(t, 1, dbPod("u1", "containerd://a", 0, ""))
	k.add("containerd://a", t0, "2026-11-30 07:00:00.000 UTC [9] 42P01 app@shop ERROR:  relation \"x\" does not exist")
	for i := range 300 {
		k.add("containerd://a", t0.Add(time.Duration(i+1)*time.Second), fmt.Sprintf("2026-11-30 07:00:00.000 UTC [1] 00000 LOG:  line %d", i))
	}
	last, err = ReadLogEntries(ctx, cs, "ns", "shop", LogOptions{MinLevel: "error", Tail: 1})
	if err != nil || len(last) != 1 || last[0].Level != "ERROR" {
		t.Fatalf("--tail 1 --level error: %v, %v", last, err)
	}
	var asked []string
	for _, r := range k.reqs {
		asked = append(asked, fmt.Sprint(*r.TailLines))
	}
	if strings.Join(asked, ",") != "72,576" {
		t.Errorf("lines asked for: %v", asked)
	}
}

func TestStreamLogsErrors(t *testing.T) {
	ctx := context.Background()
	var nf *NotFoundError
	cs, _ := newFakeCluster(t, 0, nil)
	if _, err := ReadLogEntries(ctx, cs, "ns", "other", LogOptions{}); !errors.As(err, &nf) {
		t.Errorf("a database that does not exist: %v", err)
	}
	var np *NoPodError
	if _, err := ReadLogEntries(ctx, cs, "ns", "shop", LogOptions{}); !errors.As(err, &np) || np.Replicas != 0 {
		t.Errorf("a stopped database: %v", err)
	}
	cs, _ = newFakeCluster(t, 1, dbPod("u1", "", 0, ""))
	var ns *NotStartedError
	if _, err := ReadLogEntries(ctx, cs, "ns", "shop", LogOptions{}); !errors.As(err, &ns) || ns.Reason != "ContainerCreating" {
		t.Errorf("a container that has not started: %v", err)
	}
	cs, _ = newFakeCluster(t, 1, dbPod("u1", "containerd://a", 0, ""))
	var npv *NoPreviousError
	if _, err := ReadLogEntries(ctx, cs, "ns", "shop", LogOptions{Previous: true}); !errors.As(err, &npv) {
		t.Errorf("--previous without a restart: %v", err)
	}
	var ie *InputError
	for _, o := range []LogOptions{{MinLevel: "loud"}, {Tail: -1}, {Since: -time.Second}, {Follow: true, Previous: true}} {
		if err := StreamLogs(ctx, cs, "ns", "shop", o, func(LogEntry) error { return nil }); !errors.As(err, &ie) {
			t.Errorf("%+v: %v, want an input error", o, err)
		}
	}
	// Refusals of the API pass through, typed.
	cs.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "shop-0", errors.New("no"))
	})
	if _, err := ReadLogEntries(ctx, cs, "ns", "shop", LogOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("forbidden: %v", err)
	}
}

// Following: the log of the running container, then, when it crashes, a word that it stopped,
// and the next container's log from its start; then a pod created again. No line twice.
func TestStreamLogsFollowsAcrossRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, k := newFakeCluster(t, 1, nil)
	k.add("containerd://a", t0,
		"2026-11-30 07:00:00.000 UTC [1] 00000 LOG:  database system is ready to accept connections",
		"2026-11-30 07:00:00.001 UTC [9] 42P01 app@shop ERROR:  relation \"x\" does not exist",
		"2026-11-30 07:00:00.001 UTC [9] 42P01 app@shop STATEMENT:  select * from x")
	k.add("containerd://b", t0.Add(time.Minute), "2026-11-30 07:01:00.000 UTC [1] 00000 LOG:  database system was interrupted")
	k.add("containerd://c", t0.Add(2*time.Minute), "2026-11-30 07:02:00.000 UTC [1] 00000 LOG:  database system is ready to accept connections")

	got := make(chan LogEntry, 100)
	done := make(chan error, 1)
	go func() {
		done <- StreamLogs(ctx, cs, "ns", "shop", LogOptions{Follow: true}, func(e LogEntry) error {
			got <- e
			return nil
		})
	}()
	next := func(want string) LogEntry {
		t.Helper()
		select {
		case e := <-got:
			if !strings.Contains(e.Message, want) {
				t.Fatalf("entry %+v, want %q", e, want)
			}
			return e
		case err := <-done:
			t.Fatalf("StreamLogs ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("no entry %q", want)
		}
		return LogEntry{}
	}
	pods := cs.CoreV1().Pods("ns")
	// No pod yet: it says so, and waits.
	if e := next("does not exist"); e.Source != LogSourceStackblaze {
		t.Errorf("marker %+v", e)
	}
	if _, err := pods.Create(ctx, dbPod("u1", "containerd://a", 0, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	next("ready to accept connections")
	if e := next("relation"); e.Statement != "select * from x" {
		t.Errorf("the error's statement: %+v", e)
	}
	// The container crashes, and the next one starts.
	crashed := dbPod("u1", "", 1, "containerd://a")
	if _, err := pods.UpdateStatus(ctx, crashed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if e := next("its container stopped (exit code 1, Error): waiting for the next one"); e.Source != LogSourceStackblaze {
		t.Errorf("marker %+v", e)
	}
	if _, err := pods.UpdateStatus(ctx, dbPod("u1", "containerd://b", 1, "containerd://a"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	next("pod shop-0 restarted (exit code 1, Error): following the new container")
	next("database system was interrupted")
	// The pod is deleted and created again.
	if err := pods.Delete(ctx, "shop-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	next("pod shop-0 is gone")
	if _, err := pods.Create(ctx, dbPod("u2", "containerd://c", 0, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	next("pod shop-0 was created again: following the new container")
	next("ready to accept connections")
	// The database is deleted: that ends it.
	if err := cs.AppsV1().StatefulSets("ns").Delete(ctx, "shop", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "shop-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var nf *NotFoundError
	if err := <-done; !errors.As(err, &nf) {
		t.Errorf("StreamLogs ended with %v, want a *NotFoundError", err)
	}
	select {
	case e := <-got:
		t.Errorf("an entry more: %+v", e)
	default:
	}
}

// Following with --tail: the last entries, then what comes after them, once each.
func TestStreamLogsFollowWithTail(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, k := newFakeCluster(t, 1, dbPod("u1", "containerd://a", 0, ""))
	for i := range 10 {
		k.add("containerd://a", t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("2026-11-30 07:00:0%d.000 UTC [1] 00000 LOG:  line %d", i, i))
	}
	got := make(chan LogEntry, 100)
	done := make(chan error, 1)
	go func() {
		done <- StreamLogs(ctx, cs, "ns", "shop", LogOptions{Follow: true, Tail: 2}, func(e LogEntry) error {
			got <- e
			return nil
		})
	}()
	var msgs []string
	for len(msgs) < 2 {
		select {
		case e := <-got:
			msgs = append(msgs, e.Message)
		case err := <-done:
			t.Fatalf("StreamLogs ended: %v", err)
		case <-ctx.Done():
			t.Fatalf("entries: %v", msgs)
		}
	}
	if strings.Join(msgs, ",") != "line 8,line 9" {
		t.Errorf("the last 2: %v", msgs)
	}
	// A new line. The fake ends each stream at once, as a dropped connection would: the stream of
	// the running container is read again (after idleWait), from after the last line read.
	k.add("containerd://a", t0.Add(time.Minute), "2026-11-30 07:01:00.000 UTC [1] 00000 LOG:  line 10")
	select {
	case e := <-got:
		if e.Message != "line 10" {
			t.Errorf("after the tail: %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("line 10 never came")
	}
	cancel()
	<-done
	select {
	case e := <-got:
		t.Errorf("an entry more: %+v", e)
	default:
	}
}

// While following, an error of emit (stdout closed) ends the stream at once.
func TestStreamLogsFollowStopsOnEmitError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, k := newFakeCluster(t, 1, dbPod("u1", "containerd://a", 0, ""))
	k.add("containerd://a", t0, "2026-11-30 07:00:00.000 UTC [1] 00000 LOG:  one", "2026-11-30 07:00:00.001 UTC [1] 00000 LOG:  two")
	closed := errors.New("stdout closed")
	n := 0
	err := StreamLogs(ctx, cs, "ns", "shop", LogOptions{Follow: true}, func(LogEntry) error {
		n++
		return closed
	})
	if !errors.Is(err, closed) || n != 1 {
		t.Errorf("StreamLogs: %v after %d entries, want emit's error after 1", err, n)
	}
}
