// Package tunnel forwards a local TCP port on 127.0.0.1 to a port of a database pod through
// the Kubernetes API server's pods/portforward subresource, the way `kubectl port-forward`
// does, but built for the commands that depend on it: `db migrate` and `db connect` (a
// tunnel for the life of one command) and `db proxy` (a tunnel that stays open for hours).
//
// It is built on client-go's tools/portforward: the same protocol (portforward.k8s.io, an
// error stream and a data stream per connection, paired by request ID) and the same
// transports as kubectl (SPDY tunnelled over WebSocket first, plain SPDY when the API server
// refuses the WebSocket upgrade, decided by the same rule), but not on its PortForwarder,
// whose behaviour is what users complain about. The differences, and why:
//
//   - One failing client connection cannot hurt the others. PortForwarder carries every local
//     connection over one upgraded connection and closes that connection (and so every other
//     client's) when any error stream reports anything, for example after a client resets its
//     socket ("lost connection to pod"). Here each client connection has an upgraded
//     connection of its own; one on which anything went wrong is retired once its stream is
//     done. Upgraded connections are pooled (an idle one is reused, and one spare is kept
//     warm), so a new client costs two stream round trips, as with kubectl, not a TLS
//     handshake and two upgrades; per-connection isolation also avoids the head-of-line
//     blocking that a slow client causes on a shared SPDY connection. Past maxSessions per
//     pod, clients share the least loaded upgraded connections.
//
//   - The tunnel outlives the pod. PortForwarder is bound to one pod for its life. Here a pod
//     is chosen per new client connection from an informer cache: with Target.Selector, a Ready
//     pod matching the selector; with Target.Pod, the running pod of that name. A connection
//     that arrives while the pod is being replaced waits (by watching) for the new one. When a
//     pod is deleted or replaced, its upgraded connections are closed at once, so clients
//     still connected to it see their connection end instead of hanging.
//
//   - CPU. Most of what a small query costs a port-forward client is framing: the SPDY framer
//     writes every frame in three pieces, and each piece becomes a WebSocket message, a TLS
//     record and a system call (and costs the API server and the node as much again). The
//     WebSocket transport here collects whole frames first (frameWriter), and data is copied
//     in 32 KiB pieces, so that one SPDY frame fits one WebSocket frame.
//
//   - Large transfers and idle connections. A client's half-close is passed on, and the
//     pod's answer is read to the end. Local connections have TCP keepalives; the upgraded connections send SPDY pings
//     (client-go's dialers: every 5 s for SPDY, 10 s for WebSocket), which keeps the API
//     server's and kubelet's idle timers from firing on a quiet database session.
//
// The package writes nothing to stdout or stderr (no "Forwarding from ..." chatter): its
// diagnostics go to Config.Logf when the caller gives one. It holds no package-level state.
// It does not know about PostgreSQL: use pg.WaitReady on Addr to know when the database
// answers through the tunnel.
package tunnel
