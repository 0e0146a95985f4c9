package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

func PodListWatch(cs kubernetes.Interface, ns, pod string) *cache.ListWatch {
	return ListWatchByName(pod, cs.CoreV1().Pods(ns).List, cs.CoreV1().Pods(ns).Watch)
}

// ListWatchByName lists and watches the one object called name, with a typed client's List and
// Watch.
func ListWatchByName[L runtime.Object](name string,
	list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) *cache.ListWatch {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			l, err := list(ctx, o)
			if err != nil {
				return nil, err
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return watchFn(ctx, o)
		},
	}
}

// PodReady tells whether a pod is Ready and not being deleted.
func PodReady(p *corev1.Pod) bool {
	if p == nil || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitPodReady watches a pod until it is Ready. It returns the pod, or the context's error; then
// DescribeNotReady can say why.
func WaitPodReady(ctx context.Context, cs kubernetes.Interface, ns, pod string) (*corev1.Pod, error) {
	// A database that is already up (a second create) needs no watch.
	if p, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{}); err == nil && PodReady(p) {
		return p, nil
	}
	var ready *corev1.Pod
	_, err := watchtools.UntilWithSync(ctx, PodListWatch(cs, ns, pod), &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted && PodReady(p) {
			ready = p
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("watch pod %s: %w", pod, err)
	}
	return ready, nil
}

// WaitPodGone watches until a pod does not exist.
func WaitPodGone(ctx context.Context, cs kubernetes.Interface, ns, pod string) error {
	key := ns + "/" + pod
	_, err := watchtools.UntilWithSync(ctx, PodListWatch(cs, ns, pod), &corev1.Pod{},
		func(store cache.Store) (bool, error) {
			_, exists, err := store.GetByKey(key)
			return !exists, err
		},
		func(ev watch.Event) (bool, error) { return ev.Type == watch.Deleted, nil })
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("watch pod %s: %w", pod, err)
	}
	return nil
}
