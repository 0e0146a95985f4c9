//go:build !linux

package tunnel

import "net"

// newRawConn returns c: raw system calls are used on Linux only (rawconn_linux.go).
func newRawConn(c net.Conn) net.Conn { return c }
