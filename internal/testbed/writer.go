package testbed

import (
	"bufio"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// A writer is an application attached to a database that writes in a loop, as users' apps do:
// tests of commands that must not lose a committed row while apps write (upgrade, resize) start
// one (StartWriter), follow its log (FollowWriter), stop it (StopWriter) and compare what it saw
// committed with the rows of its table (WriterRows).

// WriterName names the writer's Deployment; its pods have the label app=WriterName.
const WriterName = "writer"

// StartWriter starts the writer of database db in namespace ns: a Deployment (AppDeployment,
// named WriterName, running image, which has psql: the database image) attached to the database with
// `db attach`, so that it reaches the database through its Service with the DATABASE_URL the
// attachment injects. Every 50ms it inserts the next number (1, 2, 3, ...) into the column n of
// table, which must exist, through a new connection each time, and logs "committed N UNIXTIME"
// once psql reports the commit, or "failed N" (a failed row is not tried again).
func (e *Env) StartWriter(t testing.TB, ns, db, table, image string) {
	t.Helper()
	d := AppDeployment(WriterName, image)
	d.Spec.Template.Spec.Containers[0].Command = []string{"bash", "-c", `i=0; while true; do i=$((i+1));
  if psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -c "insert into ` + table + ` (n) values ($i)" >/dev/null 2>&1; then
    echo "committed $i $(date +%s.%N)"; else echo "failed $i"; fi; sleep 0.05; done`}
	if _, err := e.Client.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := e.Run(t, ns, "db", "attach", db, "--to", "deployment/"+WriterName); r.Code != 0 {
		t.Fatalf("attach the writer: exit %d\n%s", r.Code, r.Stderr)
	}
}

// WriterLog is what the writer logged, from the start of its attached pod.
type WriterLog struct {
	// Committed are the rows the writer saw committed, with the time it saw each commit.
	Committed map[int]time.Time
	// Failed are the rows whose insert failed, in the order of the log.
	Failed []int
	// Last is the time of the last commit in the log (zero before the first).
	Last time.Time
}

// FollowWriter follows the log of the writer's attached pod (the one whose container has
// DATABASE_URL) from its start, calling until after each line, and returns what it read when
// until says stop. Each call reads the log again from its start, so what it returns includes
// what earlier calls returned. It fails the test when the log ends first or after 5 minutes.
func (e *Env) FollowWriter(t testing.TB, ns string, until func(WriterLog) bool) WriterLog {
	t.Helper()
	ctx := Context(t, 5*time.Minute)
	pod, err := WaitPodSelected(ctx, e.Client, ns, "app="+WriterName, func(p *corev1.Pod) bool {
		for _, v := range p.Spec.Containers[0].Env {
			if v.Name == "DATABASE_URL" {
				return p.Status.Phase == corev1.PodRunning
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := e.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	w := WriterLog{Committed: map[int]time.Time{}}
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "committed":
			n, _ := strconv.Atoi(f[1])
			sec, _ := strconv.ParseFloat(f[2], 64)
			w.Last = time.Unix(0, int64(sec*1e9))
			w.Committed[n] = w.Last
		case len(f) == 2 && f[0] == "failed":
			n, _ := strconv.Atoi(f[1])
			w.Failed = append(w.Failed, n)
		}
		if until(w) {
			return w
		}
	}
	t.Fatalf("the writer's log ended after %d commits and %d failures: %v", len(w.Committed), len(w.Failed), sc.Err())
	return w
}

// StopWriter scales the writer's Deployment to zero and watches until none of its pods is left:
// after it, the writer writes no more rows.
func (e *Env) StopWriter(t testing.TB, ns string) {
	t.Helper()
	ctx := Context(t, 2*time.Minute)
	if _, err := e.Client.AppsV1().Deployments(ns).Patch(ctx, WriterName, types.MergePatchType,
		[]byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("scale the writer to 0: %v", err)
	}
	// The informer's store has taken in each event before the condition sees it.
	var pods cache.Store
	_, err := watchtools.UntilWithSync(ctx, podListWatch(ctx, e.Client, ns, metav1.ListOptions{LabelSelector: "app=" + WriterName}),
		&corev1.Pod{}, func(store cache.Store) (bool, error) {
			pods = store
			return len(store.List()) == 0, nil
		}, func(watch.Event) (bool, error) {
			return len(pods.List()) == 0, nil
		})
	if err != nil {
		t.Fatalf("wait for the writer's pods to be gone: %v", err)
	}
}

// WriterRows reads the rows of the writer's table of database db (with `db run` and psql), and
// returns how many rows each number n has.
func (e *Env) WriterRows(t testing.TB, ns, db, table string) map[int]int {
	t.Helper()
	rows := map[int]int{}
	for _, s := range strings.Fields(e.SQL(t, ns, db, "select n from "+table+" order by n")) {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("%s: a row with n %q", table, s)
		}
		rows[n]++
	}
	return rows
}
