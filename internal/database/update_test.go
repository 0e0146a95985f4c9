package database

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// ServerArgs of a spec on one plan, rewritten for another, are that spec's ServerArgs on the
// other: db update --plan gives a database exactly what db create would have.
func TestPlanArgsMatchCreate(t *testing.T) {
	for _, from := range Plans {
		for _, to := range Plans {
			s := Spec{Name: "mydb", Namespace: "ns", Version: 17, Plan: from, Settings: []string{"log_min_duration_statement=250"}}
			got := PlanArgs(ServerArgs(s), to)
			s.Plan = to
			if want := ServerArgs(s); !slices.Equal(got, want) {
				t.Errorf("%s → %s:\n got %q\nwant %q", from.Name, to.Name, got, want)
			}
		}
	}
}

// A database created before plans had settings gets them before the archive's, and the
// product's settings it lacks (the log's prefix, pg_stat_statements); its other arguments stay.
func TestPlanArgsOlderDatabase(t *testing.T) {
	old := []string{"-c", "client_connection_check_interval=2s", "-c", "wal_level=replica", "-c", "archive_mode=on", "-c", "archive_command=x", "-c", "archive_timeout=300"}
	hobby, _ := LookupPlan("hobby")
	got := strings.Join(PlanArgs(old, hobby), " ")
	want := "-c shared_preload_libraries=pg_stat_statements -c log_line_prefix=" + LogLinePrefix + " -c log_timezone=UTC -c log_lock_waits=on " +
		"-c client_connection_check_interval=2s -c shared_buffers=128MB -c effective_cache_size=384MB -c maintenance_work_mem=32MB -c work_mem=4MB -c wal_level=replica -c archive_mode=on -c archive_command=x"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestPlanChanges(t *testing.T) {
	hobby, _ := LookupPlan("hobby")
	standard, _ := LookupPlan("standard")
	s := Spec{Name: "mydb", Namespace: "ns", Version: 17, Plan: hobby, Storage: resource.MustParse("1Gi")}
	tpl := podTemplateSpec(t, s)
	cur, next, err := planTemplateOf(tpl, standard)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(planChanges(hobby, standard, cur, next), "\n")
	for _, want := range []string{"CPU request 250m → 1", "CPU limit 1 → 2", "memory 512Mi → 2Gi", "/dev/shm 128Mi → 512Mi", "shared_buffers=512MB", "point-in-time recovery on: WAL archived at least every 5 minutes"} {
		if !strings.Contains(got, want) {
			t.Errorf("changes miss %q:\n%s", want, got)
		}
	}
	cur, next, _ = planTemplateOf(tpl, hobby)
	if ch := planChanges(hobby, hobby, cur, next); len(ch) != 0 {
		t.Errorf("the same plan changes %q", ch)
	}
}

// podTemplateSpec is the pod template create writes for s, as the API server would hold it.
func podTemplateSpec(t *testing.T, s Spec) *corev1.PodTemplateSpec {
	t.Helper()
	cs := fake.NewClientset()
	objs := BuildObjects(s, Credentials{Username: "u", Password: "p", Database: "d"}, 1)
	if _, err := cs.AppsV1().StatefulSets("ns").Apply(t.Context(), objs.StatefulSet, metav1.ApplyOptions{FieldManager: "t"}); err != nil {
		t.Fatal(err)
	}
	sts, err := cs.AppsV1().StatefulSets("ns").Get(t.Context(), s.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &sts.Spec.Template
}

// A plan that a ResourceQuota of the namespace would not admit is refused before any change (a
// fake clientset: the quota's status is written here as the quota controller would).
func TestCheckPlanFitsQuota(t *testing.T) {
	hobby, _ := LookupPlan("hobby")
	standard, _ := LookupPlan("standard")
	tpl := podTemplateSpec(t, Spec{Name: "mydb", Namespace: "ns", Version: 17, Plan: hobby, Storage: resource.MustParse("1Gi")})
	cur, next, _ := planTemplateOf(tpl, standard)
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "small", Namespace: "ns"},
		Status: corev1.ResourceQuotaStatus{
			Hard: corev1.ResourceList{corev1.ResourceLimitsMemory: resource.MustParse("1Gi")},
			Used: corev1.ResourceList{corev1.ResourceLimitsMemory: resource.MustParse("512Mi")}}}
	cs := fake.NewClientset(q)
	err := checkPlanFits(t.Context(), cs, "ns", "mydb", cur, next)
	if _, ok := err.(*InputError); !ok || !strings.Contains(err.Error(), "ResourceQuota small allows 1Gi") {
		t.Errorf("standard under a 1Gi quota: %v", err)
	}
	q.Status.Hard[corev1.ResourceLimitsMemory] = resource.MustParse("4Gi")
	cs = fake.NewClientset(q)
	if err := checkPlanFits(t.Context(), cs, "ns", "mydb", cur, next); err != nil {
		t.Errorf("standard under a 4Gi quota: %v", err)
	}
}
