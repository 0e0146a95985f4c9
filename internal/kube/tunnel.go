package kube

import "context"

// Tunnel is an open port-forward to a pod's port on 127.0.0.1.
type Tunnel interface {
	Addr() string
	Port() int
	Close() error
}

// TunnelOpener opens a port-forward tunnel to a pod's port on 127.0.0.1 (internal/tunnel in the
// binary; tests replace it).
type TunnelOpener func(ctx context.Context, c *Client, namespace, pod string, port int) (Tunnel, error)
