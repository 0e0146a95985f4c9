package commands_test

import (
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/database"
)

// database returns the StatefulSet, pod and volume claim of a database as the cluster would hold
// them, created age before the pinned clock.
func clusterDatabase(name, plan string, version int, storage string, ready bool, replicas int32, age time.Duration, restarts int32) []runtime.Object {
	p, _ := database.LookupPlan(plan)
	s := database.Spec{Name: name, Namespace: "shop", Version: version, Plan: p, Storage: resource.MustParse(storage)}
	o := database.BuildObjects(s, database.Credentials{}, replicas)
	sts := &appsv1.StatefulSet{}
	mustConvert(o.StatefulSet, sts)
	sts.CreationTimestamp = metav1.NewTime(cmdtest.Clock.Add(-age))
	objs := []runtime.Object{sts, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: database.PVCName(name), Namespace: "shop", Labels: database.Labels(name)},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound,
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(storage)}},
	}}
	if replicas > 0 {
		cond := corev1.ConditionFalse
		if ready {
			cond = corev1.ConditionTrue
		}
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: database.PodName(name), Namespace: "shop", Labels: database.Labels(name)},
			Status: corev1.PodStatus{
				Phase:             corev1.PodRunning,
				Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "postgres", RestartCount: restarts}},
			},
		})
	}
	return objs
}

func TestGoldenList(t *testing.T) {
	t.Parallel()
	var objs []runtime.Object
	objs = append(objs, clusterDatabase("orders", "standard", 16, "10Gi", true, 1, 3*time.Hour+12*time.Minute, 0)...)
	objs = append(objs, clusterDatabase("analytics", "pro", 15, "200Gi", false, 1, 40*time.Second, 2)...)
	objs = append(objs, clusterDatabase("archive", "hobby", 16, "1Gi", false, 0, 9*24*time.Hour, 0)...)
	for _, tty := range []bool{false, true} {
		e := cmdtest.New(t, tty, fake.NewClientset(objs...), "shop")
		if code := run(e, "db", "list"); code != 0 {
			t.Fatalf("exit %d: %s", code, e.ErrOut)
		}
		cmdtest.Golden(t, fmt.Sprintf("list-tty-%v", tty), e.Out.String())
	}
}

func ptr[T any](v T) *T { return &v }

func TestGoldenStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		objs []runtime.Object
	}{
		{"ready", append(clusterDatabase("orders", "standard", 16, "10Gi", true, 1, 3*time.Hour, 1), &batchv1.CronJob{
			ObjectMeta: metav1.ObjectMeta{Name: "orders-backup", Namespace: "shop"},
			Spec:       batchv1.CronJobSpec{Schedule: "30 2 * * *", TimeZone: ptr("Etc/UTC")},
		})},
		{"stopped", clusterDatabase("orders", "hobby", 15, "5Gi", false, 0, 50*time.Hour, 0)},
	} {
		for _, tty := range []bool{false, true} {
			e := cmdtest.New(t, tty, fake.NewClientset(tc.objs...), "shop")
			if code := run(e, "db", "status", "orders"); code != 0 {
				t.Fatalf("exit %d: %s", code, e.ErrOut)
			}
			cmdtest.Golden(t, fmt.Sprintf("status-%s-tty-%v", tc.name, tty), e.Out.String())
		}
	}
}

// create's stdout (the summary) and stderr (the progress lines) both, on a fake cluster whose
// pod is already Ready; the tunnel and the login are fakes here and real in the E2E tests.
func TestGoldenCreate(t *testing.T) {
	t.Parallel()
	for _, tty := range []bool{false, true} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "orders-0", Namespace: "shop", Labels: database.Labels("orders")},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		}
		cs := fake.NewClientset(pod)
		allowAccessReviews(cs)
		e := cmdtest.New(t, tty, cs, "shop")
		if code := run(e, "db", "create", "orders", "--storage", "10GB", "--plan", "standard"); code != 0 {
			t.Fatalf("exit %d: %s", code, e.ErrOut)
		}
		cmdtest.Golden(t, fmt.Sprintf("create-tty-%v", tty), "--- stdout\n"+e.Out.String()+"--- stderr\n"+e.ErrOut.String())
	}
}
