package tunnel

import (
	"context"

	"errors"
	"fmt"
	"github.com/go-logr/logr"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/stackblaze/stackblaze/internal/kube"
)

// podRef is one incarnation of a pod: a StatefulSet pod recreated under its name has a new UID.
type podRef struct {
	name string
	uid  types.UID
}

type podState int

const (
	podSelectable   podState = iota // new connections may go to it
	podUnselectable                 // it exists, but is not ready, or is terminating
	podGone                         // deleted, or replaced by a pod of the same name
)

// podWatcher keeps an informer cache of the target's pods, so that choosing a pod for a new
// connection costs no API call, and so that a replaced pod is noticed at once.
type podWatcher struct {
	target  Target
	factory informers.SharedInformerFactory
	lister  corelisters.PodNamespaceLister
	cancel  context.CancelFunc
	stopped sync.Once

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every pod event
}

// startPodWatcher lists the target's pods (ctx bounds that and the first sync) and keeps
// watching them until stop is called or lifetime ends.
func startPodWatcher(ctx, lifetime context.Context, client kubernetes.Interface, target Target, logf func(string, ...any), onChange func(*podWatcher)) (*podWatcher, error) {
	opts := metav1.ListOptions{}
	what := ""
	if target.Pod != "" {
		opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", target.Pod).String()
		what = "pod " + target.Namespace + "/" + target.Pod
	} else {
		sel, err := labels.Parse(target.Selector)
		if err != nil {
			return nil, fmt.Errorf("tunnel: invalid selector %q: %w", target.Selector, err)
		}
		opts.LabelSelector = sel.String()
		what = fmt.Sprintf("pods matching %q in namespace %s", target.Selector, target.Namespace)
	}

	// One plain List first: it turns "forbidden" or "no such pod" into an error now, where an
	// informer would only retry in the background.
	list, err := client.CoreV1().Pods(target.Namespace).List(ctx, opts)
	if err != nil {
		if apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("list %s: not allowed by your credentials (the tunnel needs list and watch on pods, and create on pods/portforward): %w", what, err)
		}
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	if len(list.Items) == 0 {
		return nil, fmt.Errorf("no %s: is the database running (not scaled to 0)?", what)
	}

	w := &podWatcher{
		target:  target,
		changed: make(chan struct{}),
	}
	w.factory = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(target.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = opts.LabelSelector
			o.FieldSelector = opts.FieldSelector
		}))
	podInformer := w.factory.Core().V1().Pods()
	inf := podInformer.Informer()
	w.lister = podInformer.Lister().Pods(target.Namespace)
	if err := inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) {
		logf("watch %s: %v", what, err)
	}); err != nil {
		return nil, err
	}
	notify := func() {
		w.notify()
		onChange(w)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}); err != nil {
		return nil, err
	}
	// The informer logs nothing of its own: watch errors reach logf through the handler above.
	runCtx, cancel := context.WithCancel(klog.NewContext(lifetime, logr.Discard()))
	w.cancel = cancel
	w.factory.StartWithContext(runCtx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		w.stop()
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("watch %s: %w", what, err)
		}
		return nil, fmt.Errorf("watch %s: cache did not sync", what)
	}
	return w, nil
}

func (w *podWatcher) stop() {
	w.stopped.Do(func() {
		w.cancel()
		w.factory.Shutdown()
	})
}

func (w *podWatcher) notify() {
	w.mu.Lock()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

func (w *podWatcher) changes() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// selectable says whether a new connection may go to pod. A fixed pod needs only to be
// running (as with kubectl, so that a pod that fails its readiness probe can be debugged);
// a pod found by selector must be Ready.
func (w *podWatcher) selectable(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
		return false
	}
	if w.target.Pod != "" {
		return pod.Name == w.target.Pod
	}
	return kube.PodReady(pod)
}

// choose returns a pod for a new connection, if one is selectable now.
func (w *podWatcher) choose() (podRef, bool) {
	pods, err := w.lister.List(labels.Everything())
	if err != nil {
		return podRef{}, false
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	for _, p := range pods {
		if w.selectable(p) {
			return podRef{name: p.Name, uid: p.UID}, true
		}
	}
	return podRef{}, false
}

// wait returns a pod for a new connection, waiting (by watching) for one to become
// selectable, for at most podWaitTimeout.
func (w *podWatcher) wait(ctx context.Context) (podRef, error) {
	timer := time.NewTimer(podWaitTimeout)
	defer timer.Stop()
	for {
		ch := w.changes()
		if p, ok := w.choose(); ok {
			return p, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return podRef{}, ctx.Err()
		case <-timer.C:
			return podRef{}, errors.New("no pod became ready in time")
		}
	}
}

func (w *podWatcher) state(ref podRef) podState {
	pod, err := w.lister.Get(ref.name)
	if err != nil || pod.UID != ref.uid {
		return podGone
	}
	if !w.selectable(pod) {
		return podUnselectable
	}
	return podSelectable
}

func (w *podWatcher) describe() string {
	if w.target.Pod != "" {
		return "pod " + w.target.Namespace + "/" + w.target.Pod
	}
	return fmt.Sprintf("a ready pod matching %q in namespace %s", w.target.Selector, w.target.Namespace)
}
