package commands

import (
	"context"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/tunnel"
)

// openTunnel is the production TunnelOpener. The port-forward library's chatter goes nowhere.
func openTunnel(ctx context.Context, c *kube.Client, namespace, pod string, port int) (cmdutil.Tunnel, error) {
	return tunnel.Open(ctx, tunnel.Config{REST: c.REST, Client: c.Clientset, Logf: func(string, ...any) {}},
		tunnel.Target{Namespace: namespace, Pod: pod, Port: port})
}
