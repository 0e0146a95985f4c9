package testbed_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// dfBytes is the size and the free space of the filesystem at path in the pod, as df sees it.
func dfBytes(t *testing.T, env *testbed.Env, ns, pod, path string) (size, avail int64) {
	t.Helper()
	f := strings.Fields(mustExec(t, env, ns, pod, "df", "-B1", "--output=size,avail", path))
	if len(f) != 4 {
		t.Fatalf("df %s: %v", path, f)
	}
	size, _ = strconv.ParseInt(f[2], 10, 64)
	avail, _ = strconv.ParseInt(f[3], 10, 64)
	return size, avail
}

// A claim is a real filesystem of the size it asks, which a pod of the database's uid can fill
// (writes then fail with ENOSPC), and which grows online, in the running container, when the
// claim asks for more.
func TestE2EVolumeIsAFilesystemOfItsSize(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := testbed.Context(t, 5*time.Minute)
	claims := env.Client.CoreV1().PersistentVolumeClaims(ns)
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}
	if _, err := claims.Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	uid := int64(database.PostgresUID)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "filler"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &uid},
			Containers: []corev1.Container{{Name: "c", Image: database.DefaultImageRepository + ":17", Command: []string{"sleep", "infinity"},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
		},
	}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running, err := testbed.WaitPod(ctx, env.Client, ns, "filler", func(p *corev1.Pod) bool { return p != nil && p.Status.Phase == corev1.PodRunning })
	if err != nil {
		t.Fatal(err)
	}
	const gi = int64(1) << 30
	size, _ := dfBytes(t, env, ns, "filler", "/data")
	if size < gi*9/10 || size > gi {
		t.Fatalf("a 1Gi claim is a filesystem of %d bytes", size)
	}
	// The pod's uid (through fsGroup) fills it to the last block.
	out, err := env.Exec(t, ns, "filler", "dd", "if=/dev/zero", "of=/data/fill", "bs=1M", "count=2048")
	if err == nil || !strings.Contains(err.Error()+out, "No space left on device") {
		t.Fatalf("writing 2 GiB into 1Gi: %v %s", err, out)
	}
	if _, avail := dfBytes(t, env, ns, "filler", "/data"); avail > 1<<20 {
		t.Errorf("after filling it, %d bytes are still free", avail)
	}

	// Grow the claim: the filesystem in the running container grows.
	patch := []byte(`{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}`)
	if _, err := claims.Patch(ctx, "data", "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = watchtools.UntilWithSync(ctx, cache.NewListWatchFromClient(env.Client.CoreV1().RESTClient(), "persistentvolumeclaims", ns,
		fields.OneTermEqualSelector("metadata.name", "data")), &corev1.PersistentVolumeClaim{}, nil, func(ev watch.Event) (bool, error) {
		c, ok := ev.Object.(*corev1.PersistentVolumeClaim)
		if !ok {
			return false, nil
		}
		q := c.Status.Capacity[corev1.ResourceStorage]
		return q.Cmp(resource.MustParse("2Gi")) == 0, nil
	})
	if err != nil {
		t.Fatalf("the claim's capacity never became 2Gi: %v", err)
	}
	size, avail := dfBytes(t, env, ns, "filler", "/data")
	if size < 2*gi*9/10 || avail < gi*8/10 {
		t.Errorf("after growing to 2Gi: a filesystem of %d bytes, %d free", size, avail)
	}
	mustExec(t, env, ns, "filler", "dd", "if=/dev/zero", "of=/data/more", "bs=1M", "count=512")
	after, err := env.Client.CoreV1().Pods(ns).Get(context.Background(), "filler", metav1.GetOptions{})
	if err != nil || after.UID != running.UID || after.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the pod was replaced or restarted while its volume grew: %v", err)
	}
}
