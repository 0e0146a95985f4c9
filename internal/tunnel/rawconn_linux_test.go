package tunnel

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawPair returns a rawConn dialled to a plain TCP connection of the net package.
func rawPair(t *testing.T) (raw net.Conn, peer *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw = newRawConn(c)
	if _, ok := raw.(*rawConn); !ok {
		t.Fatalf("newRawConn(%T) = %T, want *rawConn", c, raw)
	}
	p := <-accepted
	if p == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = raw.Close(); _ = p.Close() })
	return raw, p.(*net.TCPConn)
}

// Bulk data both ways through an echo: writes far larger than the socket buffers (so that
// writes meet EAGAIN and wait for the poller), reads in small pieces, the half-close passed
// on, and EOF at the end.
func TestRawConnEcho(t *testing.T) {
	t.Parallel()
	raw, peer := rawPair(t)
	go func() {
		_, _ = io.Copy(peer, peer)
		_ = peer.CloseWrite()
	}()
	data := make([]byte, 16<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	writeErr := make(chan error, 1)
	go func() {
		rest := data
		for len(rest) > 0 {
			n := min(len(rest), 1+rng.IntN(512<<10))
			if w, err := raw.Write(rest[:n]); err != nil || w != n {
				writeErr <- err
				return
			}
			rest = rest[n:]
		}
		writeErr <- raw.(*rawConn).CloseWrite()
	}()
	h := sha256.New()
	buf := make([]byte, 1500)
	var got int
	for {
		n, err := raw.Read(buf)
		h.Write(buf[:n])
		got += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got, err)
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("write: %v", err)
	}
	want := sha256.Sum256(data)
	if got != len(data) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("echoed %d bytes, want %d, equal content: %v", got, len(data), bytes.Equal(h.Sum(nil), want[:]))
	}
	if n, err := raw.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after EOF: %d, %v", n, err)
	}
}

// Deadlines and Close behave as on a net package connection: a read deadline times out
// with os.ErrDeadlineExceeded, and Close ends a read that is waiting with net.ErrClosed.
func TestRawConnDeadlineAndClose(t *testing.T) {
	t.Parallel()
	raw, _ := rawPair(t)
	buf := make([]byte, 10)
	_ = raw.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := raw.Read(buf)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	// Said once, as the net package says it: "read tcp A->B: i/o timeout".
	if strings.Count(err.Error(), "tcp") != 1 || !strings.HasPrefix(err.Error(), "read tcp ") {
		t.Fatalf("read past its deadline: %q, want the net package's form", err)
	}
	_ = raw.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := raw.Read(buf)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	_ = raw.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) || !isClosedConn(err) {
			t.Fatalf("read on a closed connection: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a waiting read")
	}
	if _, err := raw.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed connection: %v, want net.ErrClosed", err)
	}
}

// A peer's reset reaches the reader and the writer as the system's error.
func TestRawConnPeerReset(t *testing.T) {
	t.Parallel()
	raw, peer := rawPair(t)
	_ = peer.SetLinger(0) // Close sends RST
	_ = peer.Close()
	buf := make([]byte, 10)
	if _, err := raw.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the peer's reset: %v, want ECONNRESET", err)
	}
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = raw.Write([]byte("after the reset"))
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write after the peer's reset: %v, want EPIPE or ECONNRESET", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("write error %v is not a *net.OpError of a write", err)
	}
}

func TestRawConnLeavesOtherConnsAlone(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if c := newRawConn(a); c != a {
		t.Fatalf("newRawConn(net.Pipe()) = %T, want the pipe itself", c)
	}
}
