package commands

import "github.com/stackblaze/stackblaze/internal/tunnel"

// openTunnel is the production TunnelOpener. The port-forward library's chatter goes nowhere.
var openTunnel = tunnel.Opener(nil)
