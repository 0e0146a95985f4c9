package database

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// FakeDatabase returns the StatefulSet and (when ready is not nil) the pod of a database, as the
// cluster would hold them.
func fakeDatabase(name, ns string, ready *bool) []runtime.Object {
	p, _ := LookupPlan("hobby")
	s := Spec{Name: name, Namespace: ns, Version: 16, Plan: p}
	s.Storage, _, _ = ParseStorage("1Gi")
	b, _ := toJSON(BuildObjects(s, Credentials{}, 1).StatefulSet)
	var sts appsv1.StatefulSet
	_ = fromJSON(b, &sts)
	sts.CreationTimestamp = metav1.NewTime(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC))
	objs := []runtime.Object{&sts}
	if ready != nil {
		status := corev1.ConditionFalse
		if *ready {
			status = corev1.ConditionTrue
		}
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: PodName(name), Namespace: ns, Labels: Labels(name)},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
		})
	}
	return objs
}

func TestListIsTwoCalls(t *testing.T) {
	t.Parallel()
	var objs []runtime.Object
	yes := true
	for i := range 500 {
		objs = append(objs, fakeDatabase(fmt.Sprintf("db-%03d", i), "shop", &yes)...)
	}
	cs := fake.NewClientset(objs...)
	start := time.Now()
	dbs, err := List(context.Background(), cs, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if len(dbs) != 500 || !dbs[0].Ready || dbs[0].Name != "db-000" || dbs[499].State != StateReady {
		t.Fatalf("got %d databases, first %+v", len(dbs), dbs[0])
	}
	if n := len(cs.Actions()); n != 2 {
		t.Errorf("List made %d API calls, want 2: %v", n, cs.Actions())
	}
	t.Logf("500 databases listed in %s (fake client)", time.Since(start))
}

func TestListEmpty(t *testing.T) {
	t.Parallel()
	dbs, err := List(context.Background(), fake.NewClientset(), "shop")
	if err != nil || dbs == nil || len(dbs) != 0 {
		t.Fatalf("List = %v, %v; want an empty non-nil slice", dbs, err)
	}
}

func TestStates(t *testing.T) {
	t.Parallel()
	no := false
	cs := fake.NewClientset(append(fakeDatabase("starting", "ns", &no), fakeDatabase("pending", "ns", nil)...)...)
	dbs, err := List(context.Background(), cs, "ns")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range dbs {
		got[d.Name] = d.State
	}
	if got["starting"] != StateStarting || got["pending"] != StatePending {
		t.Errorf("states %v", got)
	}
	if _, err := GetStatus(context.Background(), cs, "ns", "nope", ""); err == nil || err.Error() != "database nope not found in namespace ns" {
		t.Errorf("GetStatus(nope) = %v", err)
	}
}
