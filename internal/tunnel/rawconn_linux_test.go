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

// TryWrite takes what the socket's buffers take and returns at once when they are full,
// without an error; what it wrote arrives whole and in order, and it fails on a closed socket.
func TestRawConnTryWrite(t *testing.T) {
	t.Parallel()
	raw, peer := rawPair(t)
	tw := raw.(*rawConn)
	data := bytes.Repeat([]byte("0123456789abcdef"), (64<<20)/16) // far more than loopback buffers hold
	done := make(chan struct{})
	var n int
	var err error
	go func() {
		defer close(done)
		n, err = tw.TryWrite(data)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("TryWrite waited for a peer that does not read")
	}
	if err != nil || n == 0 || n >= len(data) {
		t.Fatalf("TryWrite of %d bytes to a peer that does not read: %d, %v; want part of it, no error", len(data), n, err)
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, data[:n]) {
		t.Fatalf("peer read %v: the %d bytes written differ", err, n)
	}
	if n, err := tw.TryWrite(nil); n != 0 || err != nil {
		t.Fatalf("TryWrite(nil) = %d, %v", n, err)
	}
	_ = raw.Close()
	if _, err := tw.TryWrite([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("TryWrite after Close: %v, want net.ErrClosed", err)
	}
}

// TestSPDYClientNotReadingShared (spdy_test.go) over real loopback sockets written with
// TryWrite (the fake peer stands for the kubelet): the read loop writes while the socket takes
// the data, queues the rest, and resets the stream past the bound.
func TestSPDYClientNotReadingSharedTCP(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	lowQueueBound(c)
	stalledOut, stalledPeer := rawPair(t) // the stalled client: stalledPeer never reads
	otherOut, otherPeer := rawPair(t)
	open := func(out net.Conn, id string) *spdyStream {
		t.Helper()
		done := make(chan []*spdyStream, 1)
		go func() {
			st, err := c.openStreams(
				streamRequest{headers: []string{"streamType", "error", "requestID", id}, out: &errorMessage{}, fin: true},
				streamRequest{headers: []string{"streamType", "data", "requestID", id}, out: out},
			)
			if err != nil {
				t.Error(err)
			}
			done <- st
		}()
		e, d := p.expect(spdySynStream), p.expect(spdySynStream)
		p.write(controlFrame(spdySynReply, 0, e.word(0), 0), controlFrame(spdySynReply, 0, d.word(0), 0))
		st := <-done
		if st == nil {
			t.FailNow()
		}
		return st[1]
	}
	stalled, other := open(stalledOut, "0"), open(otherOut, "1")

	// Enough to fill both sockets' buffers and the queue many times over.
	sent := sendData(p, stalled.id, 256<<20, false)
	if f := p.expect(spdyRstStream); f.word(0) != stalled.id {
		t.Fatalf("RST_STREAM for stream %d, want %d", f.word(0), stalled.id)
	}
	if err := waitEnded(t, stalled); !errors.Is(err, errClientNotReading) {
		t.Fatalf("stalled stream: %v", err)
	}
	select {
	case <-sent:
	case <-time.After(30 * time.Second):
		t.Fatal("the read loop stopped reading")
	}
	if stalled.received.Load() <= testMaxQueued {
		t.Fatalf("reset after %d bytes: before its socket was full", stalled.received.Load())
	}
	p.write(dataFrame(other.id, 0, []byte("hello")))
	_ = otherPeer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got := make([]byte, 5); func() error { _, err := io.ReadFull(otherPeer, got); return err }() != nil || string(got) != "hello" {
		t.Fatalf("other client got %q", got)
	}
	_ = stalledOut.Close()
	stalled.waitWritten()
	_ = stalledPeer
}
