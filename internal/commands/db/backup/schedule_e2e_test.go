package backup_test

import (
	"encoding/json"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// TestE2EScheduledBackupRuns runs the daily backup as the cluster would: a Job made from the
// CronJob's own template (what `kubectl create job --from=cronjob/...` does), whose pod runs the
// stackblaze image with the CronJob's ServiceAccount and in-cluster configuration, reaches the
// API server through its Service and takes a backup that `db backup list` shows.
func TestE2EScheduledBackupRuns(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := testbed.Context(t, 6*time.Minute)
	// The schedule is set twelve hours away, so that the cluster does not take a backup of its own
	// during the test.
	at := time.Now().UTC().Add(12 * time.Hour).Format("15:04")
	if r := env.Run(t, ns, "db", "create", "nightly", "--timeout", "3m", "--backup-at", at); r.Code != 0 {
		t.Fatalf("db create: exit %d\n%s", r.Code, r.Stderr)
	}
	cj, err := env.Client.BatchV1().CronJobs(ns).Get(ctx, database.BackupScheduleName("nightly"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly-backup-now", Labels: cj.Spec.JobTemplate.Labels},
		Spec:       cj.Spec.JobTemplate.Spec,
	}
	if _, err := env.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sel := fields.OneTermEqualSelector("metadata.name", job.Name).String()
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return env.Client.BatchV1().Jobs(ns).List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return env.Client.BatchV1().Jobs(ns).Watch(ctx, o)
		},
	}
	var done *batchv1.Job
	_, _ = watchtools.UntilWithSync(ctx, lw, &batchv1.Job{}, nil, func(ev watch.Event) (bool, error) {
		j, ok := ev.Object.(*batchv1.Job)
		if !ok {
			return false, nil
		}
		for _, c := range j.Status.Conditions {
			if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
				done = j
				return true, nil
			}
		}
		return false, nil
	})
	pods, _ := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job.Name})
	logs := ""
	for _, p := range pods.Items {
		b, _ := env.Client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		logs += p.Name + ":\n" + string(b)
		if img := p.Spec.Containers[0].Image; img != cj.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Image || p.Spec.ServiceAccountName != database.BackupScheduleName("nightly") {
			t.Errorf("the job's pod runs %s as %s", img, p.Spec.ServiceAccountName)
		}
	}
	if done == nil || done.Status.Succeeded != 1 {
		t.Fatalf("the scheduled backup did not succeed (%v):\n%s", ctx.Err(), logs)
	}
	r := env.Run(t, ns, "db", "backup", "list", "nightly", "-o", "json")
	var doc listDoc
	if err := json.Unmarshal([]byte(r.Stdout), &doc); r.Code != 0 || err != nil || len(doc.Backups) != 1 {
		t.Fatalf("backup list after the scheduled backup (exit %d): %v\n%s\njob's pod:\n%s", r.Code, err, r.Stdout, logs)
	}
}
