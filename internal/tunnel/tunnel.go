package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stackblaze/stackblaze/internal/kube"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Target names the pod port that a tunnel forwards to.
type Target struct {
	// Namespace holds the pod.
	Namespace string
	// Pod is a fixed pod name. Every new connection goes to the pod of that name that is
	// running at the time, so a StatefulSet pod that is recreated under its name is found again.
	// Exactly one of Pod and Selector is set.
	Pod string
	// Selector is a label selector: a Ready pod is chosen per new connection, so a replaced pod
	// is found again.
	Selector string
	// Port is the pod's port, for example 5432.
	Port int
}

// Config carries what a tunnel needs from its caller.
type Config struct {
	// REST is the client configuration used for the port-forward upgrade requests.
	REST *rest.Config
	// Client watches the target's pods and builds the port-forward URLs.
	Client kubernetes.Interface
	// LocalPort is the port to listen on, on 127.0.0.1. 0 picks a free port.
	LocalPort int
	// Logf, if set, receives diagnostics: a failed connection, a replaced pod, a fallback to
	// SPDY, a client connection ended because it stopped reading. They never contain
	// credentials. Nothing is logged anywhere else.
	Logf func(format string, args ...any)

	// maxSessions, when set, replaces the default cap on upgraded connections per pod
	// (maxSessions), so that tests can have clients share them.
	maxSessions int
}

// Tunnel is an open port-forward tunnel: a listener on 127.0.0.1 whose connections are carried
// to the target pod's port. It stays open until Close.
type Tunnel struct {
	cfg    Config
	target Target
	ln     net.Listener
	port   int
	pods   *podWatcher

	// ctx ends when the tunnel closes; it aborts waits for a pod and pending dials.
	ctx    context.Context
	cancel context.CancelFunc

	// spdyOnly is set once the WebSocket upgrade was refused, so that later dials go straight
	// to SPDY instead of paying for a failed WebSocket attempt each time.
	spdyOnly atomic.Bool

	bufs sync.Pool

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	pools  map[types.UID]*pool

	// maxSessions caps the upgraded connections to one pod (Config.maxSessions or the default).
	maxSessions int
	// notReading counts the client connections ended because they stopped reading on an
	// upgraded connection they shared (see spdy.go).
	notReading atomic.Int64

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

const (
	// podWaitTimeout is how long a new connection waits for a pod to become selectable
	// (a pod being replaced) before it is closed.
	podWaitTimeout = 2 * time.Minute
	// dialTimeout bounds one upgrade request to the API server.
	dialTimeout = 30 * time.Second
	// keepAlive is the idle time after which TCP keepalive probes start on local connections.
	keepAlive = 30 * time.Second
	// copyBufferSize is the most client data one SPDY frame carries: with its 8-byte header it
	// fits one frame of client-go's WebSocket writer (33 KiB buffer), so it is not fragmented.
	copyBufferSize = 32 << 10
)

// Open starts listening on 127.0.0.1 (on cfg.LocalPort, or a free port) and forwards every
// connection to target. It fails when no pod matches the target, and it proves the path by
// upgrading one connection to the pod when a pod is ready for it. ctx bounds Open only: once
// Open returns, the tunnel lives until Close.
func Open(ctx context.Context, cfg Config, target Target) (*Tunnel, error) {
	if err := validate(cfg, target); err != nil {
		return nil, err
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	lifetime, cancel := context.WithCancel(context.Background())
	t := &Tunnel{
		cfg:    cfg,
		target: target,
		ctx:    lifetime,
		cancel: cancel,
		conns:  map[net.Conn]struct{}{},
		pools:  map[types.UID]*pool{},

		maxSessions: cfg.maxSessions,
	}
	if t.maxSessions <= 0 {
		t.maxSessions = maxSessions
	}
	t.bufs.New = func() any { b := make([]byte, spdyHeaderLen+copyBufferSize); return &b }

	pods, err := startPodWatcher(ctx, lifetime, cfg.Client, target, cfg.Logf, t.reconcile)
	if err != nil {
		cancel()
		return nil, err
	}
	t.pods = pods

	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepAlive, Interval: 10 * time.Second, Count: 6}}
	ln, err := lc.Listen(ctx, "tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.LocalPort)))
	if err != nil {
		pods.stop()
		cancel()
		if cfg.LocalPort != 0 {
			return nil, fmt.Errorf("listen on 127.0.0.1:%d (is the port in use? choose another or 0 for a free one): %w", cfg.LocalPort, err)
		}
		return nil, fmt.Errorf("listen on 127.0.0.1: %w", err)
	}
	t.ln = ln
	t.port = ln.Addr().(*net.TCPAddr).Port

	// Prove the path (RBAC on pods/portforward, the upgrade itself) now rather than on the
	// first client connection; the upgraded connection is kept for that client.
	if pod, ok := pods.choose(); ok {
		p := t.poolFor(pod)
		if err := p.warm(ctx); err != nil {
			_ = t.Close()
			return nil, fmt.Errorf("port-forward to pod %s/%s: %w", target.Namespace, pod.name, err)
		}
	}

	t.wg.Add(1)
	go t.accept()
	return t, nil
}

func validate(cfg Config, target Target) error {
	switch {
	case cfg.REST == nil:
		return errors.New("tunnel: no REST config")
	case cfg.Client == nil:
		return errors.New("tunnel: no Kubernetes client")
	case target.Namespace == "":
		return errors.New("tunnel: no namespace")
	case (target.Pod == "") == (target.Selector == ""):
		return errors.New("tunnel: set exactly one of pod and selector")
	case target.Port <= 0 || target.Port > 65535:
		return fmt.Errorf("tunnel: invalid pod port %d", target.Port)
	case cfg.LocalPort < 0 || cfg.LocalPort > 65535:
		return fmt.Errorf("tunnel: invalid local port %d", cfg.LocalPort)
	}
	return nil
}

// Addr is the local address to connect to, "127.0.0.1:PORT".
func (t *Tunnel) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(t.port)) }

// Port is the local port.
func (t *Tunnel) Port() int { return t.port }

// Close stops the listener and closes every connection and upgraded connection. It is
// idempotent and waits until the tunnel's goroutines have finished.
func (t *Tunnel) Close() error {
	t.closeOnce.Do(func() {
		t.cancel()
		t.mu.Lock()
		t.closed = true
		conns := t.conns
		t.conns = map[net.Conn]struct{}{}
		pools := t.pools
		t.pools = map[types.UID]*pool{}
		t.mu.Unlock()

		if t.ln != nil {
			if err := t.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				t.closeErr = err
			}
		}
		for c := range conns {
			_ = c.Close()
		}
		for _, p := range pools {
			p.close()
		}
		t.pods.stop()
		t.wg.Wait()
	})
	return t.closeErr
}

func (t *Tunnel) accept() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.cfg.Logf("accept on %s: %v; retrying in %v", t.Addr(), err, delay)
			select {
			case <-time.After(delay):
			case <-t.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		conn = newRawConn(conn)
		if !t.track(conn) {
			_ = conn.Close()
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.untrack(conn)
			t.serve(conn)
		}()
	}
}

func (t *Tunnel) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

func (t *Tunnel) untrack(c net.Conn) {
	_ = c.Close()
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// poolFor returns the pool of upgraded connections to one pod incarnation.
func (t *Tunnel) poolFor(pod podRef) *pool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.pools[pod.uid]; ok {
		return p
	}
	p := newPool(t, pod)
	if t.closed {
		p.closed = true
		return p
	}
	t.pools[pod.uid] = p
	return p
}

// reconcile runs on every pod event: upgraded connections to a pod that is gone are closed
// (so that connections still in flight to it fail now instead of hanging), and idle ones to
// a pod that may no longer be chosen are dropped.
func (t *Tunnel) reconcile(pods *podWatcher) {
	t.mu.Lock()
	var gone, stale []*pool
	for uid, p := range t.pools {
		switch pods.state(p.pod) {
		case podGone:
			gone = append(gone, p)
			delete(t.pools, uid)
		case podUnselectable:
			stale = append(stale, p)
		}
	}
	t.mu.Unlock()
	for _, p := range gone {
		t.cfg.Logf("pod %s/%s (uid %s) is gone: closing its connections", t.target.Namespace, p.pod.name, p.pod.uid)
		p.close()
	}
	for _, p := range stale {
		p.dropIdle()
	}
}

// portForwardURL is the pods/portforward subresource of one pod.
func (t *Tunnel) portForwardURL(pod string) *url.URL {
	return t.cfg.Client.CoreV1().RESTClient().Post().
		Namespace(t.target.Namespace).Resource("pods").Name(pod).SubResource("portforward").URL()
}

// getBuf returns a buffer for one SPDY data frame: its header and copyBufferSize of data.
func (t *Tunnel) getBuf() *[]byte  { return t.bufs.Get().(*[]byte) }
func (t *Tunnel) putBuf(b *[]byte) { t.bufs.Put(b) }

// Opener is a kube.TunnelOpener that opens this package's tunnels, logging with logf (nil: no
// logging).
func Opener(logf func(format string, args ...any)) kube.TunnelOpener {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return func(ctx context.Context, c *kube.Client, namespace, pod string, port int) (kube.Tunnel, error) {
		return Open(ctx, Config{REST: c.REST, Client: c.Clientset, Logf: logf}, Target{Namespace: namespace, Pod: pod, Port: port})
	}
}
