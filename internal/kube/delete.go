package kube

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Deleted says what Delete removed and what it kept.
type Deleted struct {
	Deleted []string `json:"deleted"`
	Kept    []string `json:"kept"`
}

// Exists tells whether a database (its StatefulSet, managed by stackblaze) exists.
func Exists(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	sts, err := cs.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && !IsManaged(sts.Labels)) {
		return &NotFoundError{Name: name, Namespace: ns}
	}
	if err != nil {
		return fmt.Errorf("get statefulset %s: %w", name, err)
	}
	return nil
}

// Delete removes a database's objects, found by label. Without deleteData it keeps the volume
// claim and the two Secrets: the data directory only accepts the passwords they hold, so a later
// create of the same name uses them and finds the data.
func Delete(ctx context.Context, cs kubernetes.Interface, ns, name string, deleteData bool) (*Deleted, error) {
	var d Deleted
	sel := metav1.ListOptions{LabelSelector: ManagedSelector(name)}
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	del := func(kind, objName string, err error) error {
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete %s %s: %w", kind, objName, err)
		}
		d.Deleted = append(d.Deleted, kind+"/"+objName)
		return nil
	}

	stss, err := cs.AppsV1().StatefulSets(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list statefulsets: %w", err)
	}
	for _, o := range stss.Items {
		if err := del("statefulset", o.Name, cs.AppsV1().StatefulSets(ns).Delete(ctx, o.Name, opts)); err != nil {
			return &d, err
		}
	}
	svcs, err := cs.CoreV1().Services(ns).List(ctx, sel)
	if err != nil {
		return &d, fmt.Errorf("list services: %w", err)
	}
	for _, o := range svcs.Items {
		if err := del("service", o.Name, cs.CoreV1().Services(ns).Delete(ctx, o.Name, opts)); err != nil {
			return &d, err
		}
	}
	nps, err := cs.NetworkingV1().NetworkPolicies(ns).List(ctx, sel)
	if err != nil {
		return &d, fmt.Errorf("list networkpolicies: %w", err)
	}
	for _, o := range nps.Items {
		if err := del("networkpolicy", o.Name, cs.NetworkingV1().NetworkPolicies(ns).Delete(ctx, o.Name, opts)); err != nil {
			return &d, err
		}
	}
	cms, err := cs.CoreV1().ConfigMaps(ns).List(ctx, sel)
	if err != nil {
		return &d, fmt.Errorf("list configmaps: %w", err)
	}
	for _, o := range cms.Items {
		if err := del("configmap", o.Name, cs.CoreV1().ConfigMaps(ns).Delete(ctx, o.Name, opts)); err != nil {
			return &d, err
		}
	}
	secs, err := cs.CoreV1().Secrets(ns).List(ctx, sel)
	if err != nil {
		return &d, fmt.Errorf("list secrets: %w", err)
	}
	for _, o := range secs.Items {
		if !deleteData {
			d.Kept = append(d.Kept, "secret/"+o.Name)
			continue
		}
		if err := del("secret", o.Name, cs.CoreV1().Secrets(ns).Delete(ctx, o.Name, opts)); err != nil {
			return &d, err
		}
	}
	pvcs, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, sel)
	if err != nil {
		return &d, fmt.Errorf("list persistentvolumeclaims: %w", err)
	}
	names := map[string]bool{}
	for _, o := range pvcs.Items {
		names[o.Name] = true
	}
	// The StatefulSet controller names the claim; find it by name too in case labels were lost.
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, PVCName(name), metav1.GetOptions{}); err == nil {
		names[PVCName(name)] = true
	}
	for n := range names {
		if !deleteData {
			d.Kept = append(d.Kept, "persistentvolumeclaim/"+n)
			continue
		}
		if err := del("persistentvolumeclaim", n, cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, n, opts)); err != nil {
			return &d, err
		}
	}
	return &d, nil
}

// Scale sets a database's replica count through the scale subresource, so that the fields create
// applies stay as they are.
func Scale(ctx context.Context, cs kubernetes.Interface, ns, name string, replicas int32) (previous int32, err error) {
	sc, err := cs.AppsV1().StatefulSets(ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("get scale of statefulset %s: %w", name, err)
	}
	previous = sc.Spec.Replicas
	if previous == replicas {
		return previous, nil
	}
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, name, types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: FieldManager}, "scale"); err != nil {
		return previous, fmt.Errorf("scale statefulset %s: %w", name, err)
	}
	return previous, nil
}
