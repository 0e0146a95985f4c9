package resize_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// fillTo writes rows into an unlogged table (no WAL: only the data files grow) until the data
// volume is at least percent used, as df in the database's container says.
func fillTo(t *testing.T, env *testbed.Env, ns, db string, percent int) {
	t.Helper()
	env.MustExec(t, ns, database.PodName(db), "sh", "-c", fmt.Sprintf(
		`psql -X -q -U postgres -d postgres -c "create unlogged table if not exists fill (n int, pad text)" || exit 1
while [ "$(df --output=pcent %s | tail -n 1 | tr -dc 0-9)" -lt %d ]; do
  psql -X -q -U postgres -d postgres -v ON_ERROR_STOP=1 -c "insert into fill select g, repeat(md5(random()::text), 30) from generate_series(1, 20000) g" || exit 1
done`, database.DataMountPath, percent))
}

// waitGrowth watches the data claim until autogrow has recorded a growth to size.
func waitGrowth(t *testing.T, env *testbed.Env, ns, db, size string) *database.Growth {
	t.Helper()
	ctx := testbed.Context(t, 5*time.Minute)
	var g database.Growth
	lw := cache.NewListWatchFromClient(env.Client.CoreV1().RESTClient(), "persistentvolumeclaims", ns, fields.OneTermEqualSelector("metadata.name", database.PVCName(db)))
	if _, err := watchtools.UntilWithSync(ctx, lw, &corev1.PersistentVolumeClaim{}, nil, func(ev watch.Event) (bool, error) {
		c, ok := ev.Object.(*corev1.PersistentVolumeClaim)
		if !ok {
			return false, nil
		}
		g = database.Growth{}
		_ = json.Unmarshal([]byte(c.Annotations[database.AnnotationAutogrow]), &g)
		return g.To == size, nil
	}); err != nil {
		t.Fatalf("autogrow did not grow the volume to %s: %v (last record %+v)", size, err, g)
	}
	return &g
}

func dataFilesystemBytes(t *testing.T, env *testbed.Env, ns, db string) int64 {
	t.Helper()
	df := strings.Fields(env.MustExec(t, ns, database.PodName(db), "df", "-B1", "--output=size", database.DataMountPath))
	n, _ := strconv.ParseInt(df[len(df)-1], 10, 64)
	return n
}

// Autogrow: bad policies are refused with nothing made; with --auto --max 3Gi on a 1Gi database,
// writing past 80% makes the cluster grow it (no command run) to 2Gi, then 3Gi, and never past
// 3Gi; db status shows it; its ServiceAccount may do no more than that; --auto=false removes it.
func TestE2EAutogrow(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := context.Background()
	const db = "auto"
	if r := env.Run(t, ns, "db", "create", db); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	cronJobs := env.Client.BatchV1().CronJobs(ns)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--auto"}, "--auto needs --max"},
		{[]string{"--auto", "--max", "1Gi"}, "not more than the volume's 1Gi"},
		{[]string{"--auto", "--max", "600Gi"}, "1Gi to 500Gi"},
		{[]string{"--auto", "--max", "3Gi", "--at", "99"}, "from 50 to 95"},
		{[]string{"--auto", "--max", "3Gi", "--every", "30s"}, "whole minutes from 1m to 60m"},
		{[]string{"--max", "3Gi"}, "use them with --auto"},
	} {
		r := env.Run(t, ns, append([]string{"db", "resize", db}, tc.args...)...)
		if r.Code != 2 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("resize %v: exit %d, want 2 and %q\n%s", tc.args, r.Code, tc.want, r.Stderr)
		}
	}
	if l, err := cronJobs.List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 1 {
		t.Fatalf("a refused autogrow made objects: %v %v", err, l)
	}

	if r := env.Run(t, ns, "db", "resize", db, "--auto", "--max", "3Gi", "--every", "1m"); r.Code != 0 || !strings.Contains(r.Stdout, "autogrow on") {
		t.Fatalf("resize --auto: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// The job's ServiceAccount: its database's claims, and nothing it could turn into more.
	sa := "system:serviceaccount:" + ns + ":" + database.AutogrowName(db)
	for _, a := range []struct {
		attr    authorizationv1.ResourceAttributes
		allowed bool
	}{
		{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "persistentvolumeclaims", Name: database.PVCName(db)}, true},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "exec", Name: database.PodName(db)}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "persistentvolumeclaims", Name: "data-other-0"}, false},
		{authorizationv1.ResourceAttributes{Verb: "patch", Group: "apps", Resource: "statefulsets", Name: db}, false},
		{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "pods", Name: database.PodName(db)}, false},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods"}, false},
		{authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Name: database.SuperuserSecretName(db)}, false},
	} {
		a.attr.Namespace = ns
		r, err := env.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: sa, Groups: []string{"system:serviceaccounts"}, ResourceAttributes: &a.attr}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.Allowed != a.allowed {
			t.Errorf("autogrow's ServiceAccount: %s %s/%s %s allowed=%v, want %v", a.attr.Verb, a.attr.Resource, a.attr.Subresource, a.attr.Name, r.Status.Allowed, a.allowed)
		}
	}

	// Past 80% of 1Gi: the cluster grows it to 2Gi (the backup volume to 4Gi), no command run.
	fillTo(t, env, ns, db, 82)
	g := waitGrowth(t, env, ns, db, "2Gi")
	if g.From != "1Gi" || g.UsedPercent < 80 {
		t.Errorf("the first growth: %+v", g)
	}
	if n := dataFilesystemBytes(t, env, ns, db); n < 19*(1<<30)/10 {
		t.Errorf("the data filesystem after the growth to 2Gi has %d bytes", n)
	}
	if spec, _ := claimSize(t, env, ns, database.BackupPVCName(db)); spec != "4Gi" {
		t.Errorf("the backup claim after the growth to 2Gi: %s", spec)
	}
	r := env.Run(t, ns, "db", "status", db, "-o", "json")
	var st database.Status
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil || st.Storage != "2Gi" || st.Autogrow == nil || st.Autogrow.Max != "3Gi" ||
		st.Autogrow.At != 80 || st.Autogrow.Last == nil || st.Autogrow.Last.To != "2Gi" {
		t.Errorf("status after the growth: %v\n%s", err, r.Stdout)
	}
	if r := env.Run(t, ns, "db", "status", db); !strings.Contains(r.Stdout, "last grew 1Gi → 2Gi") {
		t.Errorf("status does not show the growth:\n%s", r.Stdout)
	}

	// Past 80% of 2Gi: 3Gi, its maximum.
	fillTo(t, env, ns, db, 82)
	waitGrowth(t, env, ns, db, "3Gi")
	if n := dataFilesystemBytes(t, env, ns, db); n < 29*(1<<30)/10 {
		t.Errorf("the data filesystem after the growth to 3Gi has %d bytes", n)
	}

	// Past 80% of 3Gi: a check that finishes after this finds the maximum and grows nothing.
	fillTo(t, env, ns, db, 82)
	filled := time.Now()
	job := waitJobAfter(t, env, ns, db, filled)
	if spec, status := claimSize(t, env, ns, database.PVCName(db)); spec != "3Gi" || status != "3Gi" {
		t.Errorf("autogrow grew the volume past its maximum: %s, %s", spec, status)
	}
	if log := jobLog(t, env, ns, job); !strings.Contains(log, "at its maximum 3Gi already") {
		t.Errorf("the check at the maximum said:\n%s", log)
	}

	// Off: its objects are gone, status says nothing of it.
	if r := env.Run(t, ns, "db", "resize", db, "--auto=false"); r.Code != 0 || !strings.Contains(r.Stdout, "autogrow off") {
		t.Fatalf("resize --auto=false: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if _, err := cronJobs.Get(ctx, database.AutogrowName(db), metav1.GetOptions{}); err == nil {
		t.Errorf("the autogrow CronJob is still there")
	}
	if r := env.Run(t, ns, "db", "status", db, "-o", "json"); strings.Contains(r.Stdout, `"autogrow"`) {
		t.Errorf("status still shows autogrow:\n%s", r.Stdout)
	}
}

// waitJobAfter watches the autogrow jobs until one scheduled after since has succeeded.
func waitJobAfter(t *testing.T, env *testbed.Env, ns, db string, since time.Time) string {
	t.Helper()
	ctx := testbed.Context(t, 5*time.Minute)
	var name string
	_, err := watchtools.UntilWithSync(ctx, cache.NewListWatchFromClient(env.Client.BatchV1().RESTClient(), "jobs", ns, fields.Everything()), &batchv1.Job{}, nil, func(ev watch.Event) (bool, error) {
		j, ok := ev.Object.(*batchv1.Job)
		if !ok || !strings.HasPrefix(j.Name, database.AutogrowName(db)+"-") || j.CreationTimestamp.Time.Before(since.Truncate(time.Second)) {
			return false, nil
		}
		if j.Status.Succeeded > 0 {
			name = j.Name
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no autogrow check ran to the end after the last fill: %v", err)
	}
	return name
}

// jobLog is the log of a job's pod.
func jobLog(t *testing.T, env *testbed.Env, ns, job string) string {
	t.Helper()
	ctx := context.Background()
	pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("the pods of job %s: %v", job, err)
	}
	rc, err := env.Client.CoreV1().Pods(ns).GetLogs(pods.Items[0].Name, &corev1.PodLogOptions{}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}
