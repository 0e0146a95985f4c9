package logs

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
)

// execute runs the command on e's Factory and returns its exit code.
func execute(e *cmdtest.Env, runF func(*Options) error, args ...string) int {
	cmd := NewCmdLogs(e.F, runF)
	cmd.SetArgs(args)
	cmd.SetOut(e.Out)
	cmd.SetErr(e.ErrOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		e.ErrOut.WriteString("error: " + err.Error() + "\n")
		if h := cmdutil.Hint(err); h != "" {
			e.ErrOut.WriteString("  " + h + "\n")
		}
	}
	return cmdutil.ExitCode(err)
}

func TestFlags(t *testing.T) {
	t.Parallel()
	e := cmdtest.New(t, false, nil, "shop")
	var got *Options
	if code := execute(e, func(o *Options) error { got = o; return nil }, "mydb", "-f", "--since", "10m", "--tail", "20", "--level", "WARN"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.ErrOut)
	}
	if got.Name != "mydb" || !got.Follow || got.Since != 10*time.Minute || got.Tail != 20 || got.Level != "warning" || got.Previous || got.Backups {
		t.Errorf("options %+v", got)
	}
	if code := execute(e, func(o *Options) error { got = o; return nil }, "mydb", "-p", "--backups=false"); code != 0 || !got.Previous {
		t.Errorf("-p: exit %d, %+v", code, got)
	}
}

// Bad flags exit 2, say what is allowed, and never reach the cluster (the Factory's Kube fails
// the test when it is called).
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"mydb", "--level", "loud"}, `log level "loud" does not exist: use one of debug, info, warning, error, fatal`},
		{[]string{"mydb", "-f", "--previous"}, "does not go with -f"},
		{[]string{"mydb", "--backups", "-f"}, "--backups shows the logs of the backup jobs"},
		{[]string{"mydb", "--backups", "--previous"}, "--backups shows the logs of the backup jobs"},
		{[]string{"mydb", "--tail", "-1"}, "--tail -1 is negative"},
		{[]string{"mydb", "--since", "-5m"}, "--since -5m0s is negative"},
		{[]string{}, "needs a database name"},
		{[]string{"My_DB"}, "not valid"},
	} {
		e := cmdtest.New(t, false, nil, "shop")
		if code := execute(e, nil, tc.args...); code != cmdutil.ExitUsage || !strings.Contains(e.ErrOut.String(), tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s", tc.args, code, tc.want, e.ErrOut)
		}
	}
}

const sample = `entrypoint: initialised
2026-11-30 07:00:00.100 UTC [1] 00000 LOG:  database system is ready to accept connections
2026-11-30 07:00:05.123 UTC [57] 42P01 app@shop ERROR:  relation "nope" does not exist at character 15
2026-11-30 07:00:05.123 UTC [57] 42P01 app@shop STATEMENT:  select *
	from nope
2026-11-30 07:00:06.000 UTC [58] 01000 app@shop WARNING:  careful
2026-11-30 07:00:06.000 UTC [58] 01000 app@shop HINT:  a hint
2026-11-30 07:00:07.000 P00  ERROR: [041]: unable to open file
                                    HINT: is the volume full?
`

// cluster is a database shop with a running pod whose container's log is sample, each line
// received by the runtime a millisecond after the one before from at.
func cluster(at time.Time, replicas int32) *fake.Clientset {
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "ns", Labels: database.Labels("shop")},
		Spec: appsv1.StatefulSetSpec{Replicas: &replicas}}
	objs := []runtime.Object{sts}
	if replicas > 0 {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "shop-0", Namespace: "ns"},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: database.ContainerName, ContainerID: "containerd://a",
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}})
	}
	backup := func(name string, created time.Time, phase corev1.PodPhase) *corev1.Pod {
		l := database.Labels("shop")
		l[database.LabelName] = "stackblaze-backup"
		l["job-name"] = strings.TrimSuffix(name, "-x")
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: l, CreationTimestamp: metav1.NewTime(created)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "backup"}}},
			Status: corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{Name: "backup",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://" + name}}}}}}
	}
	objs = append(objs,
		backup("shop-backup-2-x", at.Add(24*time.Hour), corev1.PodFailed),
		backup("shop-backup-1-x", at, corev1.PodSucceeded))
	cs := fake.NewClientset(objs...)
	backups := []string{
		"2026-11-30T03:00:01Z   Backing up shop ...\n2026-11-30T03:00:09Z ✔ Full backup 20261130-030001F of shop, 3.1 MiB\n",
		"2026-12-01T03:00:01Z   Backing up shop ...\nerror: database shop: pgbackrest backup failed\n",
	}
	cs.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "log" {
			return false, nil, nil
		}
		var b bytes.Buffer
		text := sample
		// The fake does not say which pod: the backup jobs' pods are read oldest first.
		if a.(k8stesting.GenericAction).GetValue().(*corev1.PodLogOptions).Container == "backup" {
			text, backups = backups[0], backups[1:]
		}
		for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			b.WriteString(at.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano) + " " + l + "\n")
		}
		return true, &runtime.Unknown{Raw: b.Bytes()}, nil
	})
	return cs
}

var at = time.Date(2026, 11, 30, 7, 0, 0, 0, time.UTC)

func TestText(t *testing.T) {
	t.Parallel()
	e := cmdtest.New(t, false, cluster(at, 1), "ns")
	if code := execute(e, nil, "shop"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.ErrOut)
	}
	want := `2026-11-30 07:00:00.000           entrypoint: initialised
2026-11-30 07:00:00.100  LOG      database system is ready to accept connections
2026-11-30 07:00:05.123  ERROR    relation "nope" does not exist at character 15  (app@shop, 42P01)
  statement: select *
             from nope
2026-11-30 07:00:06.000  WARNING  careful  (app@shop, 01000)
  hint: a hint
2026-11-30 07:00:00.007  ERROR    pgbackrest: [041]: unable to open file
  hint: is the volume full?
`
	if got := e.Out.String(); got != want {
		t.Errorf("text:\n%s\nwant:\n%s", got, want)
	}

	// --level error: the errors only.
	e = cmdtest.New(t, false, cluster(at, 1), "ns")
	if code := execute(e, nil, "shop", "--level", "error"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.ErrOut)
	}
	if got := e.Out.String(); strings.Count(got, "ERROR") != 2 || strings.Contains(got, "WARNING") || strings.Contains(got, "LOG") {
		t.Errorf("--level error:\n%s", got)
	}
}

// On a terminal the level is coloured; without one, or with NO_COLOR, it is not.
func TestColour(t *testing.T) {
	t.Parallel()
	e := cmdtest.New(t, true, cluster(at, 1), "ns")
	if code := execute(e, nil, "shop"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.ErrOut)
	}
	if !strings.Contains(e.Out.String(), "\x1b[31mERROR\x1b[0m") || !strings.Contains(e.Out.String(), "\x1b[33mWARNING\x1b[0m") {
		t.Errorf("no colour on a terminal:\n%q", e.Out)
	}
	e = cmdtest.New(t, true, cluster(at, 1), "ns")
	e.Vars["NO_COLOR"] = "1"
	execute(e, nil, "shop")
	if strings.Contains(e.Out.String(), "\x1b[") {
		t.Errorf("colour with NO_COLOR:\n%q", e.Out)
	}
}

func TestJSONLines(t *testing.T) {
	t.Parallel()
	e := cmdtest.New(t, false, cluster(at, 1), "ns")
	e.F.IO.Configure("json", false)
	if code := execute(e, nil, "shop"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.ErrOut)
	}
	lines := strings.Split(strings.TrimSuffix(e.Out.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines:\n%s", len(lines), e.Out)
	}
	var entries []database.LogEntry
	for _, l := range lines {
		var le database.LogEntry
		if err := json.Unmarshal([]byte(l), &le); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		entries = append(entries, le)
	}
	if e := entries[2]; e.Level != "ERROR" || e.SQLState != "42P01" || e.Statement != "select *\nfrom nope" || e.Pod != "shop-0" || e.PID != 57 || e.Source != "postgres" {
		t.Errorf("the error: %+v", e)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	e := cmdtest.New(t, false, cluster(at, 0), "ns")
	if code := execute(e, nil, "shop"); code != cmdutil.ExitError || !strings.Contains(e.ErrOut.String(), "database shop is stopped (scaled to 0): it has no pod, so no log") ||
		!strings.Contains(e.ErrOut.String(), "stackblaze db scale shop --replicas 1") {
		t.Errorf("stopped: exit %d:\n%s", code, e.ErrOut)
	}
	e = cmdtest.New(t, false, cluster(at, 1), "ns")
	if code := execute(e, nil, "other"); code != cmdutil.ExitNotFound {
		t.Errorf("not found: exit %d:\n%s", code, e.ErrOut)
	}
	e = cmdtest.New(t, false, cluster(at, 1), "ns")
	if code := execute(e, nil, "shop", "--previous"); code != cmdutil.ExitError || !strings.Contains(e.ErrOut.String(), "has no previous container: it has not restarted since it was created") {
		t.Errorf("--previous: exit %d:\n%s", code, e.ErrOut)
	}
}

func TestBackups(t *testing.T) {
	t.Parallel()
	e := cmdtest.New(t, false, cluster(at, 1), "ns")
	if code := execute(e, nil, "shop", "--backups"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.ErrOut)
	}
	want := `==> pod shop-backup-1-x (job shop-backup-1, Succeeded, created 2026-11-30 07:00:00 UTC) <==
2026-11-30 07:00:00.000             Backing up shop ...
2026-11-30 07:00:00.001           ✔ Full backup 20261130-030001F of shop, 3.1 MiB

==> pod shop-backup-2-x (job shop-backup-2, Failed, created 2026-12-01 07:00:00 UTC) <==
2026-11-30 07:00:00.000             Backing up shop ...
2026-11-30 07:00:00.001  ERROR    error: database shop: pgbackrest backup failed
`
	if got := e.Out.String(); got != want {
		t.Errorf("--backups:\n%s\nwant:\n%s", got, want)
	}
	e = cmdtest.New(t, false, cluster(at, 1), "ns")
	e.F.IO.Configure("json", false)
	if code := execute(e, nil, "shop", "--backups", "--level", "error"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.ErrOut)
	}
	var le database.LogEntry
	if err := json.Unmarshal(e.Out.Bytes(), &le); err != nil || le.Pod != "shop-backup-2-x" || le.Level != "ERROR" || le.Source != "backup" {
		t.Errorf("--backups --level error -o json: %v\n%s", err, e.Out)
	}
}
