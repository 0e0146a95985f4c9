package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

const (
	// maxIdle is how many idle upgraded connections a pod's pool keeps for new clients.
	maxIdle = 8
	// maxSessions caps the upgraded connections to one pod (by default: Config.maxSessions).
	// Below it every client connection has an upgraded connection of its own; above it,
	// clients share the least loaded ones, those whose clients keep up first.
	maxSessions = 64
)

// errPodGone: the pool's pod was deleted or replaced while a client was being served.
var errPodGone = errors.New("pod is gone")

// session is one upgraded (WebSocket or SPDY) connection to a pod's port-forward endpoint.
type session struct {
	conn   *spdyConn
	active int  // client connections using it; guarded by pool.mu
	broken bool // no new streams: it failed, or a stream on it ended badly; guarded by pool.mu
	nextID int  // request IDs pair a data stream with its error stream; guarded by pool.mu
	// gone is closed when the pod behind the session is deleted or replaced, just before the
	// upgraded connection is closed: the client connections it carries end at once, and say
	// why.
	gone     chan struct{}
	goneOnce sync.Once
}

func (s *session) markGone() { s.goneOnce.Do(func() { close(s.gone) }) }

// pool holds the upgraded connections to one pod incarnation. Each client connection takes a
// session of its own (an idle one if there is one, so that a new client costs one stream
// round trip instead of a TLS handshake and two upgrades), and gives it back when it ends
// cleanly. A session on which anything went wrong is closed once its last stream is done: a
// failure never reaches another client's connection.
type pool struct {
	t   *Tunnel
	pod podRef
	url *url.URL

	mu      sync.Mutex
	closed  bool
	idle    []*session
	all     map[*session]struct{}
	warming bool
}

func newPool(t *Tunnel, pod podRef) *pool {
	return &pool{t: t, pod: pod, url: t.portForwardURL(pod.name), all: map[*session]struct{}{}}
}

// warm dials one session into the idle list (used by Open to prove the path).
func (p *pool) warm(ctx context.Context) error {
	s, err := p.dial(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = s.conn.Close()
		return errors.New("tunnel closed")
	}
	p.all[s] = struct{}{}
	p.idle = append(p.idle, s)
	go p.watch(s)
	return nil
}

// acquire returns a session for one client connection, and whether it was reused (a stream
// that fails on a reused session is worth one retry on a fresh one).
func (p *pool) acquire(ctx context.Context) (*session, bool, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false, errPodGone
	}
	for len(p.idle) > 0 {
		s := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if s.broken {
			continue
		}
		s.active++
		// Keep one spare warm, so that the next client does not wait for an upgrade either.
		spare := len(p.idle) == 0 && !p.warming && len(p.all) < p.t.maxSessions
		if spare {
			p.warming = true
		}
		p.mu.Unlock()
		if spare {
			// The caller is a serve goroutine, counted in t.wg: Add cannot race with Wait.
			p.t.wg.Add(1)
			go p.refill()
		}
		return s, true, nil
	}
	if len(p.all) >= p.t.maxSessions {
		// The least loaded session, preferring one whose clients all keep up: a stream with
		// a backlog there would be reset if it grew past its bound while shared (spdy.go).
		var best *session
		var bestBehind bool
		for s := range p.all {
			if s.broken {
				continue
			}
			behind := s.conn.backlogged.Load() > 0
			if best == nil || !behind && bestBehind || behind == bestBehind && s.active < best.active {
				best, bestBehind = s, behind
			}
		}
		if best != nil {
			best.active++
			p.mu.Unlock()
			return best, true, nil
		}
	}
	p.mu.Unlock()

	s, err := p.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = s.conn.Close()
		return nil, false, errPodGone
	}
	s.active = 1
	p.all[s] = struct{}{}
	go p.watch(s)
	return s, false, nil
}

func (p *pool) refill() {
	defer p.t.wg.Done()
	err := p.warm(p.t.ctx)
	p.mu.Lock()
	p.warming = false
	p.mu.Unlock()
	if err != nil && p.t.ctx.Err() == nil {
		p.t.cfg.Logf("pre-open a port-forward connection to pod %s: %v", p.pod.name, err)
	}
}

// release gives a session back after one client connection. clean says that nothing went
// wrong on it; otherwise the session takes no new streams and is closed when idle.
func (p *pool) release(s *session, clean bool) {
	p.mu.Lock()
	s.active--
	if !clean {
		s.broken = true
	}
	closeIt := false
	if s.active == 0 {
		if s.broken || p.closed || len(p.idle) >= maxIdle {
			closeIt = true
			delete(p.all, s)
		} else {
			p.idle = append(p.idle, s)
		}
	}
	p.mu.Unlock()
	if closeIt {
		_ = s.conn.Close()
	}
}

// watch forgets a session whose upgraded connection has closed (API server restart, network
// failure, pod gone). Client connections on it see their streams fail; nobody else does.
func (p *pool) watch(s *session) {
	select {
	case <-s.conn.Done():
	case <-p.t.ctx.Done():
		return
	}
	p.mu.Lock()
	s.broken = true
	for i, o := range p.idle {
		if o == s {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	if s.active == 0 {
		delete(p.all, s)
	}
	p.mu.Unlock()
}

// dropIdle closes the idle sessions (the pod may not be chosen any more); busy ones stay.
func (p *pool) dropIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	for _, s := range idle {
		delete(p.all, s)
	}
	p.mu.Unlock()
	for _, s := range idle {
		_ = s.conn.Close()
	}
}

// close closes every session of the pool, busy ones too: their clients' connections end.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	victims := make([]*session, 0, len(p.all))
	for s := range p.all {
		victims = append(victims, s)
	}
	p.all = map[*session]struct{}{}
	p.idle = nil
	p.mu.Unlock()
	for _, s := range victims {
		s.markGone()
		_ = s.conn.Close()
	}
}

// dial upgrades one connection to the pod's port-forward endpoint (see upgrade), within
// dialTimeout. An upgrade does not reliably give up when its context ends (a server that
// accepts the connection and never answers), so a dial that outlives ctx or the tunnel is
// abandoned, and its connection closed when it completes.
func (p *pool) dial(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	// Close() must not wait for an abandoned dial.
	defer context.AfterFunc(p.t.ctx, cancel)()
	type result struct {
		conn *spdyConn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := p.t.upgrade(ctx, p.url)
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("upgrade connection: %w", r.err)
		}
		return &session{conn: r.conn, gone: make(chan struct{})}, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				_ = r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("upgrade connection: %w", context.Cause(ctx))
	}
}

// streams opens the error and data streams of one forwarded connection, paired by request ID,
// as client-go does; their SYN_STREAMs go out together. The pod's data goes to local, and
// what the server reports on the error stream to errMsg. The client sends nothing on the
// error stream: it is half-closed from the start.
func (p *pool) streams(s *session, local io.Writer, errMsg *errorMessage) (errStream, dataStream *spdyStream, err error) {
	p.mu.Lock()
	id := strconv.Itoa(s.nextID)
	s.nextID++
	p.mu.Unlock()

	port := strconv.Itoa(p.t.target.Port)
	headers := func(streamType string) []string {
		return []string{corev1.StreamType, streamType, corev1.PortHeader, port, corev1.PortForwardRequestIDHeader, id}
	}
	st, err := s.conn.openStreams(
		streamRequest{headers: headers(corev1.StreamTypeError), out: errMsg, fin: true},
		streamRequest{headers: headers(corev1.StreamTypeData), out: local},
	)
	if err != nil {
		return nil, nil, fmt.Errorf("create stream: %w", err)
	}
	return st[0], st[1], nil
}

// maxErrorMessage bounds what is kept of an error stream.
const maxErrorMessage = 4 << 10

// errorMessage collects what the server writes to an error stream.
type errorMessage struct {
	mu sync.Mutex
	b  []byte
}

func (m *errorMessage) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.b = append(m.b, p[:min(len(p), max(0, maxErrorMessage-len(m.b)))]...)
	return len(p), nil
}

// TryWrite is Write: it never waits.
func (m *errorMessage) TryWrite(p []byte) (int, error) { return m.Write(p) }

func (m *errorMessage) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return string(m.b)
}
