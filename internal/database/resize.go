package database

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/stackblaze/stackblaze/internal/kube"
)

// ResizeConfigMapName holds, while a resize replaces the StatefulSet, the StatefulSet to create
// again: a run killed between the delete and the create finishes it from there.
func ResizeConfigMapName(name string) string { return name + "-resize" }

// ResizeObjects are what a resize writes besides the claims and the StatefulSet.
func ResizeObjects(name string) []ObjectRef {
	return []ObjectRef{{"ConfigMap", ResizeConfigMapName(name)}}
}

// Resized is what a resize did.
type Resized struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Claims are the claims grown (data, and backup on a volume), with their new size.
	Claims map[string]string `json:"claims"`
	// FilesystemBytes is the data filesystem's size in the container (0 when the pod does not run).
	FilesystemBytes int64 `json:"filesystemBytes"`
}

// ResizeOptions say how ResizeStorage runs.
type ResizeOptions struct {
	Progress Progress
	// Timeout bounds each wait (0: ctx alone).
	Timeout time.Duration
	// ClaimsOnly grows the claims and waits for the filesystem, and leaves the StatefulSet and
	// the pod alone (autogrow's job, which may change neither: GrowIfUsed).
	ClaimsOnly bool
	// noFilesystem skips the wait for the filesystem (its server does not run).
	noFilesystem bool
}

// ValidateResize checks a new size against the current one: a supported size, not smaller.
func ValidateResize(current resource.Quantity, to string) (resource.Quantity, error) {
	q, _, err := ParseStorage(to)
	if err != nil {
		return q, err
	}
	if q.Cmp(current) < 0 {
		return q, inputErrorf("storage %s is smaller than the database's %s: volumes only grow, use %s or more", q.String(), current.String(), current.String())
	}
	return q, nil
}

// ResizeStorage grows database name's volumes to size to (ValidateResize: an *InputError, before
// any change, for a size that is not allowed): the data claim to it, the backup claim (on a
// volume) to BackupStorage of it, online, where their StorageClass allows expansion; it
// waits, by watching, until the claims have the new capacity and the data filesystem in the
// container has grown; then it replaces the StatefulSet (deleted with its pod left running, and
// created again with the new size in its claim templates, which Kubernetes does not let change in
// place), so that a pod created later asks for the new size too. The database keeps running.
func ResizeStorage(ctx context.Context, c *kube.Client, name, to string, o ResizeOptions) (*Resized, error) {
	prog := progressOr(o.Progress)
	cs, ns := c.Clientset, c.Namespace
	if !o.ClaimsOnly {
		if err := finishReplacement(ctx, cs, ns, name); err != nil {
			return nil, err
		}
	}
	sts, current, err := sizedDatabase(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	size, err := ValidateResize(current, to)
	if err != nil {
		return nil, err
	}
	res := &Resized{From: current.String(), To: size.String(), Claims: map[string]string{}}
	want := map[string]resource.Quantity{PVCName(name): size}
	for _, t := range sts.Spec.VolumeClaimTemplates {
		if t.Name == "backup" {
			want[BackupPVCName(name)] = BackupStorage(size)
		}
	}
	// Every claim's StorageClass must allow expansion before anything changes.
	for claim := range want {
		if err := checkExpandable(ctx, cs, ns, claim); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	if o.Timeout > 0 {
		cancel()
		wctx, cancel = context.WithTimeout(ctx, o.Timeout)
	}
	defer cancel()
	for claim, q := range want {
		prog.Start("Growing volume claim %s to %s", claim, q.String())
		patch := fmt.Sprintf(`{"spec":{"resources":{"requests":{"storage":%q}}}}`, q.String())
		if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, claim, types.MergePatchType, []byte(patch),
			metav1.PatchOptions{FieldManager: kube.FieldManager}); err != nil {
			stopProgress(prog)
			// The admission plugin's refusal when the class cannot expand.
			if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "must support resize") {
				return nil, cannotExpand("", claim)
			}
			return nil, fmt.Errorf("grow persistentvolumeclaim %s: %w", claim, err)
		}
		if err := waitClaimCapacity(wctx, cs, ns, claim, q); err != nil {
			stopProgress(prog)
			return nil, err
		}
		res.Claims[claim] = q.String()
		prog.Done("Volume claim %s is %s", claim, q.String())
	}
	// A server that stopped for want of space waits in CrashLoopBackOff for minutes: its pod is
	// restarted now, on the grown volume.
	if p, err := cs.CoreV1().Pods(ns).Get(ctx, PodName(name), metav1.GetOptions{}); err == nil && !o.ClaimsOnly && !kube.PodReady(p) && p.DeletionTimestamp == nil {
		prog.Start("Restarting %s, which could not run on its full volume", name)
		err := RestartPod(wctx, cs, ns, PodName(name))
		stopProgress(prog)
		if err != nil {
			return nil, fmt.Errorf("restart the database on the grown volume: %w", err)
		}
		prog.Done("Database %s runs again", name)
	}
	// The filesystem the server writes to, seen from its container.
	if !o.noFilesystem && (o.ClaimsOnly || podIsReady(ctx, cs, ns, name)) {
		prog.Start("Waiting for the data filesystem in the container to grow")
		for {
			out, err := ExecOutput(wctx, c, name, []string{"df", "-B1", "--output=size", DataMountPath})
			if f := strings.Fields(out); err == nil && len(f) == 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				res.FilesystemBytes = n
				if n >= size.Value()*9/10 {
					break
				}
			}
			select {
			case <-wctx.Done():
				stopProgress(prog)
				return nil, fmt.Errorf("the data filesystem in the container is still %d bytes: %w", res.FilesystemBytes, wctx.Err())
			case <-time.After(time.Second):
			}
		}
		prog.Done("The data filesystem in the container has grown")
	}
	if o.ClaimsOnly {
		return res, nil
	}
	prog.Start("Recording %s in the StatefulSet (its pod keeps running)", size.String())
	err = replaceStatefulSet(ctx, cs, sts, size)
	stopProgress(prog)
	if err != nil {
		return nil, err
	}
	prog.Done("StatefulSet %s asks for %s for a new pod", name, size.String())
	return res, nil
}

func podIsReady(ctx context.Context, cs kubernetes.Interface, ns, name string) bool {
	p, err := cs.CoreV1().Pods(ns).Get(ctx, PodName(name), metav1.GetOptions{})
	return err == nil && kube.PodReady(p)
}

// waitClaimCapacity watches a claim until its status says capacity q or more.
func waitClaimCapacity(ctx context.Context, cs kubernetes.Interface, ns, claim string, q resource.Quantity) error {
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "persistentvolumeclaims", ns, fields.OneTermEqualSelector("metadata.name", claim))
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.PersistentVolumeClaim{}, nil, func(ev watch.Event) (bool, error) {
		c, ok := ev.Object.(*corev1.PersistentVolumeClaim)
		if !ok {
			return false, nil
		}
		got := c.Status.Capacity[corev1.ResourceStorage]
		return got.Cmp(q) >= 0, nil
	})
	if err != nil {
		return fmt.Errorf("volume claim %s did not reach %s (is the storage driver resizing it? `kubectl describe pvc %s`): %w", claim, q.String(), claim, err)
	}
	return nil
}

// replaceStatefulSet records the StatefulSet with size in its claim templates (and annotation)
// in a ConfigMap, deletes it leaving its pod running (orphan), and creates it again from the
// record: the new StatefulSet adopts the running pod (same selector, same template: no restart).
func replaceStatefulSet(ctx context.Context, cs kubernetes.Interface, sts *appsv1.StatefulSet, size resource.Quantity) error {
	name, ns := sts.Name, sts.Namespace
	next := &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: sts.Labels, Annotations: sts.Annotations},
		Spec:       *sts.Spec.DeepCopy(),
	}
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	next.Annotations[AnnotationStorage] = size.String()
	for i, t := range next.Spec.VolumeClaimTemplates {
		q := size
		if t.Name == "backup" {
			q = BackupStorage(size)
		}
		next.Spec.VolumeClaimTemplates[i].Spec.Resources.Requests[corev1.ResourceStorage] = q
		next.Spec.VolumeClaimTemplates[i].Status = corev1.PersistentVolumeClaimStatus{}
	}
	b, err := json.Marshal(next)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ResizeConfigMapName(name), Namespace: ns, Labels: Labels(name)},
		Data: map[string]string{"statefulset.json": string(b)}}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{FieldManager: kube.FieldManager}); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("record the StatefulSet to create again: %w", err)
		}
		patch, _ := json.Marshal(map[string]any{"data": cm.Data})
		if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, cm.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: kube.FieldManager}); err != nil {
			return fmt.Errorf("record the StatefulSet to create again: %w", err)
		}
	}
	return recreateStatefulSet(ctx, cs, ns, name)
}

// finishReplacement checks that the resize's record is the database's own and finishes a
// replacement of the StatefulSet that a killed resize left (recreateStatefulSet): every command
// that changes the StatefulSet runs it first.
func finishReplacement(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	if _, err := Guard(ctx, cs, ns, name, ResizeObjects(name)); err != nil {
		return err
	}
	return recreateStatefulSet(ctx, cs, ns, name)
}

// recreateStatefulSet finishes the replacement a resize recorded: the old StatefulSet deleted
// (leaving its pod), the recorded one created, the record removed. Nothing to do without a record;
// a rerun after a kill at any point goes on from there.
func recreateStatefulSet(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	cms := cs.CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(ctx, ResizeConfigMapName(name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get configmap %s: %w", ResizeConfigMapName(name), err)
	}
	if !IsOwnedBy(cm.Labels, name) {
		return &ForeignObjectError{Database: name, Namespace: ns, Object: ObjectRef{"ConfigMap", cm.Name}}
	}
	next := &appsv1.StatefulSet{}
	if err := json.Unmarshal([]byte(cm.Data["statefulset.json"]), next); err != nil {
		return fmt.Errorf("configmap %s: %w", cm.Name, err)
	}
	sets := cs.AppsV1().StatefulSets(ns)
	for {
		cur, err := sets.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := sets.Create(ctx, next, metav1.CreateOptions{FieldManager: kube.FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create statefulset %s again: %w", name, err)
			}
			continue
		case err != nil:
			return fmt.Errorf("get statefulset %s: %w", name, err)
		case cur.DeletionTimestamp == nil && cur.Annotations[AnnotationStorage] == next.Annotations[AnnotationStorage]:
			// The recorded one is in place.
			if err := cms.Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete configmap %s: %w", cm.Name, err)
			}
			return nil
		case cur.DeletionTimestamp == nil:
			orphan := metav1.DeletePropagationOrphan
			uid := cur.UID
			if err := sets.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &orphan,
				Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete statefulset %s (leaving its pod): %w", name, err)
			}
		}
		// Gone once its finalizer has orphaned the pod.
		lw := cache.NewListWatchFromClient(cs.AppsV1().RESTClient(), "statefulsets", ns, fields.OneTermEqualSelector("metadata.name", name))
		if _, err := watchtools.UntilWithSync(ctx, lw, &appsv1.StatefulSet{}, func(store cache.Store) (bool, error) {
			_, exists, err := store.GetByKey(ns + "/" + name)
			return !exists, err
		}, func(ev watch.Event) (bool, error) { return ev.Type == watch.Deleted, nil }); err != nil {
			return fmt.Errorf("wait for statefulset %s to be deleted: %w", name, err)
		}
	}
}

// checkExpandable refuses (an *InputError) a claim whose StorageClass does not allow expansion.
func checkExpandable(ctx context.Context, cs kubernetes.Interface, ns, claim string) error {
	pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get persistentvolumeclaim %s: %w", claim, err)
	}
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName == "" {
		return inputErrorf("volume claim %s has no StorageClass: it cannot be expanded", claim)
	}
	// StorageClasses are cluster-wide: a namespace's Role cannot grant reading them. Without
	// that permission, the API server's own refusal of the claim's growth says the same.
	sc, err := cs.StorageV1().StorageClasses().Get(ctx, *pvc.Spec.StorageClassName, metav1.GetOptions{})
	switch {
	case apierrors.IsForbidden(err):
	case err != nil:
		return fmt.Errorf("get storageclass %s: %w", *pvc.Spec.StorageClassName, err)
	case sc.AllowVolumeExpansion == nil || !*sc.AllowVolumeExpansion:
		return cannotExpand(sc.Name, claim)
	}
	return nil
}

// cannotExpand says that a claim's StorageClass (class, when known) does not allow expansion.
func cannotExpand(class, claim string) error {
	which := "the StorageClass"
	if class != "" {
		which = "StorageClass " + class
	}
	return inputErrorf("%s of volume claim %s does not allow volume expansion: the volume cannot grow in place; ask a cluster admin to set allowVolumeExpansion: true on it", which, claim)
}
