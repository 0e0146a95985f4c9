//go:build !linux

package tunnel

import "net"

// newRawConn returns c: raw system calls are used on Linux only (rawconn_linux.go). Without
// them a client socket has no TryWrite, so the pod's data for it always goes through its
// stream's writer goroutine (spdyStream.deliver): a copy per frame, never a stalled read loop.
func newRawConn(c net.Conn) net.Conn { return c }
