// Command provisioner is the test bed's storage: it stands where a cloud's CSI driver stands on a
// real cluster. For every claim of the StorageClass "testbed" (volumeBindingMode
// WaitForFirstConsumer) that the scheduler has placed on this node, it makes a directory under
// --volumes and a `local` PersistentVolume for it, bound to that node; Kubernetes' own PV
// controller binds the two, and the kubelet mounts the directory into the pod and applies the
// pod's fsGroup to it, as it does for a real volume. When a claim is deleted, its released volume
// is removed with its directory (the Delete reclaim policy).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
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
	if pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != storageClass ||
		pvc.Spec.VolumeName != "" || pvc.DeletionTimestamp != nil || pvc.Annotations[selectedNode] != p.node {
		return nil
	}
	name := "pvc-" + string(pvc.UID)
	if _, exists, _ := p.pvs.GetByKey(name); exists {
		return nil
	}
	dir := filepath.Join(p.volumes, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": provisionedBy}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: pvc.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              storageClass,
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
	if err := os.RemoveAll(dir); err != nil {
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
