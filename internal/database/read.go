package database

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/stackblaze/stackblaze/internal/kube"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// States of a database.
const (
	StateReady       = "ready"
	StateStarting    = "starting"
	StateStopped     = "stopped"
	StateStopping    = "stopping"
	StatePending     = "pending"
	StateTerminating = "terminating"
	// StateDiskFull: the data volume is full; PostgreSQL refuses writes or cannot start.
	StateDiskFull = "disk full"
)

// Database is one database as list shows it.
type Database struct {
	Name      string    `json:"name"`
	Namespace string    `json:"namespace"`
	Version   string    `json:"version"`
	Plan      string    `json:"plan"`
	Storage   string    `json:"storage"`
	Replicas  int32     `json:"replicas"`
	State     string    `json:"state"`
	Ready     bool      `json:"ready"`
	Restarts  int32     `json:"restarts"`
	Created   time.Time `json:"created"`
	// Disk is the disk use (list --disk, status), absent when not read.
	Disk *DiskUsage `json:"disk,omitempty"`
}

// List returns the databases of a namespace, sorted by name, with exactly two API calls (one list
// of StatefulSets and one of pods, both by label), however many databases there are.
func List(ctx context.Context, cs kubernetes.Interface, ns string) ([]Database, error) {
	sel := metav1.ListOptions{LabelSelector: ManagedSelector("")}
	stss, err := cs.AppsV1().StatefulSets(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list statefulsets: %w", err)
	}
	dbs := make([]Database, 0, len(stss.Items))
	if len(stss.Items) == 0 {
		return dbs, nil
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	byName := make(map[string]*corev1.Pod, len(pods.Items))
	for i := range pods.Items {
		p := &pods.Items[i]
		byName[p.Name] = p
	}
	for i := range stss.Items {
		sts := &stss.Items[i]
		dbs = append(dbs, summarize(sts, byName[PodName(sts.Name)]))
	}
	sort.Slice(dbs, func(i, j int) bool { return dbs[i].Name < dbs[j].Name })
	return dbs, nil
}

func summarize(sts *appsv1.StatefulSet, pod *corev1.Pod) Database {
	d := Database{
		Name:      sts.Name,
		Namespace: sts.Namespace,
		Version:   sts.Annotations[AnnotationVersion],
		Plan:      sts.Annotations[AnnotationPlan],
		Storage:   safeQuantity(sts.Annotations[AnnotationStorage]),
		Replicas:  1,
		Created:   sts.CreationTimestamp.Time,
	}
	if sts.Spec.Replicas != nil {
		d.Replicas = *sts.Spec.Replicas
	}
	if pod != nil {
		for _, c := range pod.Status.ContainerStatuses {
			d.Restarts += c.RestartCount
		}
	}
	d.Ready = kube.PodReady(pod)
	switch {
	case sts.DeletionTimestamp != nil:
		d.State = StateTerminating
	case d.Replicas == 0 && pod == nil:
		d.State = StateStopped
	case d.Replicas == 0:
		d.State = StateStopping
	case pod == nil:
		d.State = StatePending
	case pod.DeletionTimestamp != nil:
		d.State = StateTerminating
	case d.Ready:
		d.State = StateReady
	default:
		d.State = StateStarting
	}
	return d
}

// Status is everything status shows about one database.
type Status struct {
	Database
	Image string `json:"image"`
	// Pod is nil when the database is stopped.
	Pod *PodStatus `json:"pod"`
	// StorageBound is the capacity of the bound volume ("" while unbound).
	StorageBound string `json:"storageBound"`
	VolumeClaim  string `json:"volumeClaim"`
	VolumePhase  string `json:"volumePhase"`
	Host         string `json:"host"`
	Port         int    `json:"port"`
	Secret       string `json:"secret"`
	// Attachments are the workloads attach gave the database's variables.
	Attachments []Attachment  `json:"attachments"`
	Backups     *BackupStatus `json:"backups"`
	// Upgrade is the last major version upgrade (absent when there was none).
	Upgrade *UpgradeRecord `json:"upgrade,omitempty"`
	// Autogrow is the database's autogrow (absent when it is off).
	Autogrow *AutogrowStatus `json:"autogrow,omitempty"`
	// Disk is the disk use, read in the container (absent when it cannot be read).
	Disk *DiskUsage `json:"disk,omitempty"`
}

// ReadDisk adds the disk use to a status: read in the running container, or, when the container
// does not run, whether it stopped for want of space. A database whose data volume is full is in
// StateDiskFull. Without permission (pods/exec, pods/log) it leaves the status as it is.
func ReadDisk(ctx context.Context, c *kube.Client, st *Status) {
	if st.Pod == nil {
		return
	}
	if st.Pod.Ready {
		if d, err := ReadDiskUsage(ctx, c, st.Name); err == nil {
			st.Disk = d
		}
	} else if StoppedForSpace(ctx, c.Clientset, st.Namespace, st.Name) {
		st.Disk = &DiskUsage{Volumes: []VolumeUsage{}, Full: true}
	}
	if st.Disk != nil && st.Disk.Full {
		st.State = StateDiskFull
	}
}

// PodStatus is the part of status about the pod.
type PodStatus struct {
	Name     string `json:"name"`
	Phase    string `json:"phase"`
	Ready    bool   `json:"ready"`
	Restarts int32  `json:"restarts"`
	// Reason is why the container is waiting, when it is.
	Reason string `json:"reason,omitempty"`
}

// GetStatus reads one database. A missing StatefulSet is a *NotFoundError.
func GetStatus(ctx context.Context, cs kubernetes.Interface, ns, name, zone string) (*Status, error) {
	sts, err := GetDatabase(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, PodName(name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		pod, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get pod %s: %w", PodName(name), err)
	}
	st := &Status{
		Database:    summarize(sts, pod),
		Host:        HostFor(name, ns, zone),
		Port:        Port,
		Secret:      CredentialsSecretName(name),
		VolumeClaim: PVCName(name),
	}
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name == ContainerName {
			st.Image = c.Image
		}
	}
	if pod != nil {
		ps := &PodStatus{Name: pod.Name, Phase: string(pod.Status.Phase), Ready: kube.PodReady(pod), Restarts: st.Restarts}
		for _, c := range pod.Status.ContainerStatuses {
			if c.State.Waiting != nil {
				ps.Reason = c.State.Waiting.Reason
			}
		}
		st.Pod = ps
	}
	pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, PVCName(name), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		st.VolumePhase = "Missing"
	case err != nil:
		return nil, fmt.Errorf("get persistentvolumeclaim %s: %w", PVCName(name), err)
	default:
		st.VolumePhase = string(pvc.Status.Phase)
		if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
			st.StorageBound = q.String()
		}
		// Autogrow grows the claim, not the StatefulSet's record: the claim's request is the size.
		if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
			if rec, err := resource.ParseQuantity(st.Storage); err == nil && q.Cmp(rec) > 0 {
				st.Storage = q.String()
			}
		}
	}
	if cj, err := cs.BatchV1().CronJobs(ns).Get(ctx, AutogrowName(name), metav1.GetOptions{}); err == nil && IsOwnedBy(cj.Labels, name) {
		st.Autogrow = autogrowOf(cj, pvc)
	}
	if st.Attachments, err = ListAttachments(ctx, cs, ns, name); err != nil {
		return nil, err
	}
	st.Backups = GetBackupStatus(ctx, cs, ns, sts)
	if st.Upgrade, err = UpgradeOf(sts); err != nil {
		return nil, err
	}
	return st, nil
}
