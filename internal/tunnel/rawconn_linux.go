package tunnel

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// rawConn is a TCP connection whose reads and writes are made with syscall.RawSyscall, that
// is without telling the Go scheduler that a system call is under way, and otherwise the
// net package's connection (deadlines, Close, keepalives, the poller).
//
// Why: a tunnel under load spends its CPU in the kernel, not in its own code, and a good
// part of that kernel time was the scheduler's, not the network's. Every read and write
// through the net package enters the runtime's system-call state, and a send on a loopback
// socket does the receiver's TCP work as well, so it often lasts long enough for the
// runtime's monitor thread (sysmon) to hand the goroutine's P to another thread, waking it.
// The monitor then stays at its shortest period (20 µs) instead of backing off to 10 ms: on
// the test bed, a proxy serving 8 pgbench clients had its monitor thread sleep and wake
// about 7,000 times a second, close to half of all its context switches, and its threads
// hand work to each other besides. The sockets here are non-blocking, as every socket of the
// net package is: a read or write returns at once, with EAGAIN when it would block, and
// then the goroutine waits for the poller exactly as the net package's own reads and writes
// do. A system call that cannot block is what RawSyscall is for.
type rawConn struct {
	tcpConn
	rc syscall.RawConn
}

// tcpConn is what rawConn keeps of *net.TCPConn. Its ReadFrom and WriteTo (io.Copy's fast
// paths, which would bypass rawConn's Read and Write) are left out on purpose.
type tcpConn interface {
	net.Conn
	CloseRead() error
	CloseWrite() error
}

// newRawConn returns c with raw reads and writes when c is a TCP connection, else c itself.
func newRawConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &rawConn{tcpConn: tc, rc: rc}
}

func (c *rawConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait for the poller, then try again
			case 0:
				n = int(r)
			}
			errno = e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case errno != 0:
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *rawConn) Write(p []byte) (int, error) { return c.write(p, true) }

// TryWrite writes what the socket's send buffer takes now, without waiting for the poller:
// n < len(p) with a nil error when the buffer is full. The read loop of an upgraded
// connection writes to its clients' sockets this way, so that a client that does not read
// cannot hold it up (spdyStream.deliver).
func (c *rawConn) TryWrite(p []byte) (int, error) { return c.write(p, false) }

// write writes p with raw write calls; when the send buffer is full it waits for the poller
// (wait) or returns what it wrote.
func (c *rawConn) write(p []byte, wait bool) (int, error) {
	var n int
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n))
			switch e {
			case 0:
				n += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return !wait // the send buffer is full: wait for the poller, or stop here
			default:
				errno = e
				return true
			}
		}
		return true
	})
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case errno != 0:
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// opError describes a failed read or write as the net package does. The errors of RawConn's
// Read and Write (a closed connection, a deadline) are already *net.OpError ("raw-read"): their
// cause is kept, not wrapped twice.
func (c *rawConn) opError(op string, err error) error {
	if oe := (*net.OpError)(nil); errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
