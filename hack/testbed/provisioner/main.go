// Command provisioner is the test bed's storage: it stands where a cloud's CSI driver (and its
// external provisioner and resizer) stands on a real cluster. For every claim of the StorageClass
// "testbed" (volumeBindingMode WaitForFirstConsumer), or of another that names this provisioner,
// that the scheduler has placed on this node,
// it makes a real filesystem of the size the claim asks: an XFS image file under --volumes,
// loop-mounted on a directory beside it, and a `local` PersistentVolume for that directory, bound
// to the node. Kubernetes' own PV controller binds the two, and the kubelet mounts the directory
// into the pod and applies the pod's fsGroup to it, as it does for a real volume, so a database
// can fill its disk. When a bound claim asks for more (the StorageClass allows expansion), it
// grows the image, the loop device and the mounted filesystem online (xfs_growfs), then the
// volume's and the claim's capacity, as the external resizer and the kubelet do. When a claim is
// deleted, its released volume is unmounted and removed (the Delete reclaim policy).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

const (
	storageClass  = "testbed"
	provisionedBy = "testbed.stackblaze.io/local"
	selectedNode  = "volume.kubernetes.io/selected-node"
)

type provisioner struct {
	client  kubernetes.Interface
	node    string
	volumes string
	claims  cache.Indexer
	pvs     cache.Indexer
	queue   workqueue.TypedRateLimitingInterface[string]
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "admin kubeconfig")
	node := flag.String("node", "", "the node whose claims this provisioner serves")
	volumes := flag.String("volumes", "", "directory that holds the volumes")
	flag.Parse()
	if *kubeconfig == "" || *node == "" || *volumes == "" {
		fmt.Fprintln(os.Stderr, "usage: provisioner --kubeconfig FILE --node NAME --volumes DIR")
		os.Exit(2)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	factory := informers.NewSharedInformerFactory(client, 0)
	claimInf := factory.Core().V1().PersistentVolumeClaims().Informer()
	pvInf := factory.Core().V1().PersistentVolumes().Informer()
	p := &provisioner{
		client: client, node: *node, volumes: *volumes,
		claims: claimInf.GetIndexer(), pvs: pvInf.GetIndexer(),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
	}
	enqueue := func(prefix string) cache.ResourceEventHandlerFuncs {
		add := func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				p.queue.Add(prefix + key)
			}
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, o any) { add(o) }}
	}
	if _, err := claimInf.AddEventHandler(enqueue("claim/")); err != nil {
		log.Fatal(err)
	}
	if _, err := pvInf.AddEventHandler(enqueue("pv/")); err != nil {
		log.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	log.Printf("provisioning claims of StorageClass %s on node %s under %s", storageClass, p.node, p.volumes)
	go func() { <-ctx.Done(); p.queue.ShutDown() }()
	for p.next(ctx) {
	}
}

func (p *provisioner) next(ctx context.Context) bool {
	key, quit := p.queue.Get()
	if quit {
		return false
	}
	defer p.queue.Done(key)
	var err error
	switch {
	case len(key) > 6 && key[:6] == "claim/":
		err = p.syncClaim(ctx, key[6:])
	case len(key) > 3 && key[:3] == "pv/":
		err = p.syncVolume(ctx, key[3:])
	}
	if err != nil {
		log.Printf("%s: %v (retrying)", key, err)
		p.queue.AddRateLimited(key)
		return true
	}
	p.queue.Forget(key)
	return true
}

// syncClaim provisions a volume for a claim the scheduler has placed on this node.
func (p *provisioner) syncClaim(ctx context.Context, key string) error {
	obj, ok, err := p.claims.GetByKey(key)
	if err != nil || !ok {
		return err
	}
	pvc := obj.(*corev1.PersistentVolumeClaim)
	if pvc.Spec.StorageClassName == nil || pvc.DeletionTimestamp != nil || !p.ours(ctx, *pvc.Spec.StorageClassName) {
		return nil
	}
	if pvc.Spec.VolumeName != "" {
		return p.expand(ctx, pvc)
	}
	if pvc.Annotations[selectedNode] != p.node {
		return nil
	}
	name := "pvc-" + string(pvc.UID)
	if _, exists, _ := p.pvs.GetByKey(name); exists {
		return nil
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	dir := filepath.Join(p.volumes, name)
	if err := p.makeFilesystem(dir, size.Value()); err != nil {
		return err
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": provisionedBy}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              *pvc.Spec.StorageClassName,
			VolumeMode:                    pvc.Spec.VolumeMode,
			ClaimRef: &corev1.ObjectReference{
				APIVersion: "v1", Kind: "PersistentVolumeClaim",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{p.node},
				}},
			}}}},
		},
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := p.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	log.Printf("provisioned %s for %s at %s", name, key, dir)
	return nil
}

// syncVolume deletes a released volume of ours and its directory.
func (p *provisioner) syncVolume(ctx context.Context, key string) error {
	obj, ok, err := p.pvs.GetByKey(key)
	if err != nil || !ok {
		return err
	}
	pv := obj.(*corev1.PersistentVolume)
	if pv.Annotations["pv.kubernetes.io/provisioned-by"] != provisionedBy || pv.Status.Phase != corev1.VolumeReleased ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || pv.Spec.Local == nil {
		return nil
	}
	dir := pv.Spec.Local.Path
	if filepath.Dir(dir) != filepath.Clean(p.volumes) {
		return fmt.Errorf("volume %s is at %s, outside %s: not deleting it", pv.Name, dir, p.volumes)
	}
	if mounted(dir) {
		if err := run("umount", dir); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Remove(dir + ".img"); err != nil && !os.IsNotExist(err) {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	log.Printf("deleted %s and %s", pv.Name, dir)
	return nil
}

// makeFilesystem makes an XFS filesystem of size bytes in the image dir.img and mounts it on dir
// through a loop device (mount -o loop: the device goes with the unmount). XFS reserves no blocks
// for root: the database's uid may fill all of it, as on a cloud's volume of that size. (XFS
// rather than ext4: growing a mounted ext4 needs CAP_SYS_RESOURCE, which root may lack where the
// test bed runs, as on our machines; xfs_growfs needs CAP_SYS_ADMIN.) Done again after a crash
// half-way, it finishes what is missing.
func (p *provisioner) makeFilesystem(dir string, size int64) error {
	if mounted(dir) {
		return nil
	}
	img := dir + ".img"
	if _, err := os.Stat(img); os.IsNotExist(err) {
		tmp := img + ".tmp"
		if err := run("truncate", "-s", strconv.FormatInt(size, 10), tmp); err != nil {
			return err
		}
		if err := run("mkfs.xfs", "-q", "-f", tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, img); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return run("mount", "-o", "loop", img, dir)
}

// expand grows a bound claim's volume to what the claim asks, online: the image, its loop device,
// the mounted filesystem, then the volume's capacity and the claim's status.
func (p *provisioner) expand(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	obj, ok, err := p.pvs.GetByKey(pvc.Spec.VolumeName)
	if err != nil || !ok {
		return err
	}
	pv := obj.(*corev1.PersistentVolume)
	if pv.Annotations["pv.kubernetes.io/provisioned-by"] != provisionedBy || pv.Spec.Local == nil {
		return nil
	}
	want := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	have := pv.Spec.Capacity[corev1.ResourceStorage]
	if want.Cmp(have) > 0 {
		dir := pv.Spec.Local.Path
		if filepath.Dir(dir) != filepath.Clean(p.volumes) || !mounted(dir) {
			return nil // another node's, or not mounted here
		}
		img := dir + ".img"
		if err := run("truncate", "-s", strconv.FormatInt(want.Value(), 10), img); err != nil {
			return err
		}
		out, err := exec.Command("losetup", "-j", img, "-n", "-O", "NAME").Output()
		dev := strings.TrimSpace(string(out))
		if err != nil || dev == "" || strings.Contains(dev, "\n") {
			return fmt.Errorf("the loop device of %s: %q %v", img, dev, err)
		}
		if err := run("losetup", "-c", dev); err != nil {
			return err
		}
		if err := run("xfs_growfs", dir); err != nil {
			return err
		}
		cur, err := p.client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.Capacity[corev1.ResourceStorage] = want
		if _, err := p.client.CoreV1().PersistentVolumes().Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return err
		}
		log.Printf("expanded %s (%s/%s) from %s to %s", pv.Name, pvc.Namespace, pvc.Name, have.String(), want.String())
	}
	got := pvc.Status.Capacity[corev1.ResourceStorage]
	if got.Cmp(want) >= 0 {
		return nil
	}
	c := pvc.DeepCopy()
	c.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: want}
	c.Status.AllocatedResources = corev1.ResourceList{corev1.ResourceStorage: want}
	c.Status.AllocatedResourceStatuses = nil
	c.Status.Conditions = nil
	_, err = p.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{})
	return err
}

// mounted tells whether dir is a mount point.
func mounted(dir string) bool {
	return exec.Command("mountpoint", "-q", dir).Run() == nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ours tells whether a StorageClass is served by this provisioner: "testbed", or another that
// names it (tests make one without volume expansion).
func (p *provisioner) ours(ctx context.Context, class string) bool {
	if class == storageClass {
		return true
	}
	sc, err := p.client.StorageV1().StorageClasses().Get(ctx, class, metav1.GetOptions{})
	return err == nil && sc.Provisioner == provisionedBy
}
