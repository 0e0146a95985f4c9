package testbed

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/portforward"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/transport/spdy"
)

// WaitPod watches one pod until cond says yes, and returns the pod it said yes to. A pod that does
// not exist (yet) is passed to cond as nil.
func WaitPod(ctx context.Context, c kubernetes.Interface, ns, name string, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	lw := podListWatch(ctx, c, ns, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	var got *corev1.Pod
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, func(store cache.Store) (bool, error) {
		_, ok, err := store.GetByKey(ns + "/" + name)
		if err != nil || !ok {
			return cond(nil), err
		}
		return false, nil
	}, func(ev watch.Event) (bool, error) {
		if ev.Type == watch.Deleted {
			return cond(nil), nil
		}
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		if cond(p) {
			got = p
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("wait for pod %s/%s: %w", ns, name, err)
	}
	return got, nil
}

// PortForward forwards a free loopback port to the pod's port with client-go's portforward
// package, WebSocket first with SPDY fallback, and returns the local address. The forward ends
// with ctx.
func PortForward(ctx context.Context, cfg *rest.Config, ns, pod string, port int) (string, error) {
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	u := c.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	dialer, err := dialer(cfg, u)
	if err != nil {
		return "", err
	}
	ready := make(chan struct{})
	stop := make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		return "", err
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	go func() { <-ctx.Done(); close(stop) }()
	select {
	case <-ready:
	case err := <-errc:
		return "", fmt.Errorf("port-forward to %s/%s: %w", ns, pod, err)
	case <-ctx.Done():
		return "", ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))), nil
}

func dialer(cfg *rest.Config, u *url.URL) (httpstream.Dialer, error) {
	tunnelingDialer, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
	if err != nil {
		return nil, err
	}
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	spdyDialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	return portforward.NewFallbackDialer(tunnelingDialer, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	}), nil
}

// podListWatch lists and watches the pods of ns that opts select.
func podListWatch(ctx context.Context, c kubernetes.Interface, ns string, opts metav1.ListOptions) *cache.ListWatch {
	with := func(o metav1.ListOptions) metav1.ListOptions {
		o.FieldSelector, o.LabelSelector = opts.FieldSelector, opts.LabelSelector
		return o
	}
	return &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			return c.CoreV1().Pods(ns).List(ctx, with(o))
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			return c.CoreV1().Pods(ns).Watch(ctx, with(o))
		},
	}
}

// WaitPodSelected watches the pods of ns that match the label selector until cond says yes to
// one (not being deleted), and returns it.
func WaitPodSelected(ctx context.Context, c kubernetes.Interface, ns, selector string, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	var got *corev1.Pod
	ok := func(p *corev1.Pod) bool {
		if p.DeletionTimestamp == nil && cond(p) {
			got = p
			return true
		}
		return false
	}
	_, err := watchtools.UntilWithSync(ctx, podListWatch(ctx, c, ns, metav1.ListOptions{LabelSelector: selector}), &corev1.Pod{},
		func(store cache.Store) (bool, error) {
			for _, o := range store.List() {
				if ok(o.(*corev1.Pod)) {
					return true, nil
				}
			}
			return false, nil
		}, func(ev watch.Event) (bool, error) {
			p, isPod := ev.Object.(*corev1.Pod)
			return isPod && ev.Type != watch.Deleted && ok(p), nil
		})
	if err != nil {
		return nil, fmt.Errorf("wait for a pod %s in %s: %w", selector, ns, err)
	}
	return got, nil
}
