// Package tunnel forwards a local TCP port on 127.0.0.1 to a port of a database pod through
// the Kubernetes API server's pods/portforward subresource, the way `kubectl port-forward`
// does, but built for the commands that depend on it: `db migrate`, `db run`, `db connect`,
// `db rotate-credentials` and create's login check (a tunnel for the life of one command) and
// `db proxy` (a tunnel that stays open for hours).
//
// It speaks the protocol of client-go's tools/portforward (portforward.k8s.io: an error
// stream and a data stream per connection, paired by request ID) over the same transports as
// kubectl (SPDY tunnelled over WebSocket first, plain SPDY when the API server refuses the
// WebSocket upgrade, decided by the same rule), with client-go's upgrade requests, but with a
// SPDY client of its own (spdy.go) instead of client-go's, and without its PortForwarder,
// whose behaviour is what users complain about. The differences, and why:
//
//   - One failing client connection cannot hurt the others. PortForwarder carries every local
//     connection over one upgraded connection and closes that connection (and so every other
//     client's) when any error stream reports anything, for example after a client resets its
//     socket ("lost connection to pod"). Here each client connection has an upgraded
//     connection of its own; one on which anything went wrong is retired once its stream is
//     done. Upgraded connections are pooled (an idle one is reused, and one spare is kept
//     warm), so a new client costs one round trip for its two streams (kubectl takes two),
//     not a TLS handshake and two upgrades; per-connection isolation also avoids the
//     head-of-line blocking that a slow client causes on a shared SPDY connection. Past
//     maxSessions per pod, clients share the least loaded upgraded connections (those whose
//     clients keep up first), and a shared connection is never held up by one of them: the
//     pod's data for a client whose socket is full is queued for it, up to a bound (1 MiB,
//     spdy.go), and a client that stops reading past it while others share its upgraded
//     connection has its stream reset and its connection closed, with the reason logged.
//     (SPDY as the kubelet speaks it has no per-stream flow control: the choice is between
//     stalling every client on the connection, unbounded memory, and ending that one client.)
//     A client alone on its upgraded connection (the usual case, below maxSessions) is not
//     ended for reading slowly: the pod is held back instead, as by TCP.
//
//   - The tunnel outlives the pod. PortForwarder is bound to one pod for its life. Here a pod
//     is chosen per new client connection from an informer cache: with Target.Selector, a Ready
//     pod matching the selector; with Target.Pod, the running pod of that name. A connection
//     that arrives while the pod is being replaced waits (by watching) for the new one. When a
//     pod is deleted or replaced, its upgraded connections are closed at once, so clients
//     still connected to it see their connection end instead of hanging.
//
//   - CPU. What a port-forward client spends on a small query goes to system calls and to
//     the Go scheduler, waking goroutines, more than to its own code. client-go's SPDY client
//     (spdystream) hands each frame it reads through three goroutines, wakes a fourth (its
//     idle timer) for every frame read or written, and writes each frame in three pieces, each
//     of which becomes a WebSocket message, a TLS record and a system call. Here one goroutine
//     per upgraded connection reads the frames and writes the pod's data straight to the
//     client's socket, as far as the socket takes it without waiting (only a backlog is copied,
//     and written by a goroutine of that client's own), and each frame is written whole,
//     header and payload in one Write; data
//     is sent in 32 KiB frames, so that one SPDY frame fits one WebSocket frame. On Linux
//     the client's sockets and, over WebSocket, the one under TLS to the API server are read and
//     written with raw system calls (the plain-SPDY fallback dials through client-go) (rawconn_linux.go): the Go scheduler is not told about a system call
//     that cannot block, so it does not hand the goroutine's thread's work to another thread
//     mid-write, and its monitor thread backs off instead of waking every 20 µs. That halves
//     the tunnel's context switches and takes a third off its CPU per transaction.
//
//   - Large transfers and idle connections. A client's half-close is passed on, and the
//     pod's answer is read to the end. Local connections have TCP keepalives; the upgraded
//     connections send SPDY pings (as client-go's dialers do: every 5 s for SPDY, 10 s for
//     WebSocket), which keeps the API server's and kubelet's idle timers from firing on a
//     quiet database session.
//
// The package writes nothing to stdout or stderr (no "Forwarding from ..." chatter): its
// diagnostics go to Config.Logf when the caller gives one. It holds no package-level state.
// It does not know about PostgreSQL: use pg.WaitReady on Addr to know when the database
// answers through the tunnel.
package tunnel
