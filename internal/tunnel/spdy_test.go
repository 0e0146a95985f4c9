package tunnel

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"hash/adler32"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	httpstreamspdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
)

// testFrame is one SPDY frame as the fake peer sees it.
type testFrame struct {
	control bool
	typ     uint16 // control frames
	id      uint32 // data frames
	flags   byte
	payload []byte
}

// word is the n-th 32-bit word of the payload.
func (f testFrame) word(n int) uint32 { return binary.BigEndian.Uint32(f.payload[4*n:]) }

// fakePeer is the server's end of an upgraded connection, speaking raw frames.
type fakePeer struct {
	t      *testing.T
	conn   net.Conn
	blocks []byte // every header block received, for decoding in one compression context
	nblock int
}

// newTestConn is a client connection over net.Pipe to a fake peer. Writes on net.Pipe wait
// for the other side's read, so a test reads every frame the client sends.
func newTestConn(t *testing.T, pingPeriod time.Duration) (*spdyConn, *fakePeer) {
	t.Helper()
	client, server := net.Pipe()
	c := newSPDYConn(client, pingPeriod)
	t.Cleanup(func() {
		_ = c.Close()
		_ = server.Close()
		<-c.Done()
	})
	return c, &fakePeer{t: t, conn: server}
}

func (p *fakePeer) readFrame() testFrame {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [spdyHeaderLen]byte
	if _, err := io.ReadFull(p.conn, h[:]); err != nil {
		p.t.Fatalf("peer: read frame header: %v", err)
	}
	f := testFrame{control: h[0]&0x80 != 0, flags: h[4]}
	if f.control {
		if v := binary.BigEndian.Uint16(h[:2]) & 0x7fff; v != 3 {
			p.t.Fatalf("peer: control frame of version %d", v)
		}
		f.typ = binary.BigEndian.Uint16(h[2:4])
	} else {
		f.id = binary.BigEndian.Uint32(h[:4])
	}
	f.payload = make([]byte, int(h[5])<<16|int(h[6])<<8|int(h[7]))
	if _, err := io.ReadFull(p.conn, f.payload); err != nil {
		p.t.Fatalf("peer: read frame payload: %v", err)
	}
	return f
}

// expect reads a frame and checks its kind: a control frame type, or 0 for a data frame.
func (p *fakePeer) expect(typ uint16) testFrame {
	p.t.Helper()
	f := p.readFrame()
	if typ == 0 && f.control || typ != 0 && (!f.control || f.typ != typ) {
		p.t.Fatalf("peer: got frame %+v, want type %d", f, typ)
	}
	return f
}

// headers decodes a SYN_STREAM's header block, in the connection's compression context, as
// name, value, name, value...
func (p *fakePeer) headers(f testFrame) []string {
	p.t.Helper()
	p.blocks = append(p.blocks, f.payload[10:]...)
	p.nblock++
	zr, err := zlib.NewReaderDict(bytes.NewReader(p.blocks), spdyDictionary())
	if err != nil {
		p.t.Fatalf("peer: header block: %v", err)
	}
	read32 := func() uint32 {
		var b [4]byte
		if _, err := io.ReadFull(zr, b[:]); err != nil {
			p.t.Fatalf("peer: header block: %v", err)
		}
		return binary.BigEndian.Uint32(b[:])
	}
	var h []string
	for range p.nblock {
		h = nil
		for range 2 * read32() {
			b := make([]byte, read32())
			if _, err := io.ReadFull(zr, b); err != nil {
				p.t.Fatalf("peer: header block: %v", err)
			}
			h = append(h, string(b))
		}
	}
	return h
}

func (p *fakePeer) write(frames ...[]byte) {
	p.t.Helper()
	_ = p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.conn.Write(slices.Concat(frames...)); err != nil {
		p.t.Fatalf("peer: write: %v", err)
	}
}

func controlFrame(typ uint16, flags byte, payload ...uint32) []byte {
	b := appendControlHeader(nil, typ, flags, 4*len(payload))
	for _, w := range payload {
		b = binary.BigEndian.AppendUint32(b, w)
	}
	return b
}

func dataFrame(id uint32, flags byte, payload []byte) []byte {
	b := make([]byte, spdyHeaderLen, spdyHeaderLen+len(payload))
	putDataHeader(b, id, flags, len(payload))
	return append(b, payload...)
}

// openPair opens an error stream (half-closed) and a data stream as the tunnel does, and has
// the peer accept both. The data stream's data goes to the returned connection's other end.
func openPair(t *testing.T, c *spdyConn, p *fakePeer) (errStream, data *spdyStream, errMsg *errorMessage, local net.Conn) {
	t.Helper()
	errMsg = &errorMessage{}
	local, client := net.Pipe()
	t.Cleanup(func() { _ = local.Close(); _ = client.Close() })
	type result struct {
		st  []*spdyStream
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := c.openStreams(
			streamRequest{headers: []string{"streamType", "error", "requestID", "0"}, out: errMsg, fin: true},
			streamRequest{headers: []string{"streamType", "data", "requestID", "0"}, out: local},
		)
		done <- result{st, err}
	}()
	e, d := p.expect(spdySynStream), p.expect(spdySynStream)
	p.write(controlFrame(spdySynReply, 0, e.word(0), 0), controlFrame(spdySynReply, 0, d.word(0), 0))
	r := <-done
	if r.err != nil {
		t.Fatalf("openStreams: %v", r.err)
	}
	return r.st[0], r.st[1], errMsg, client
}

func readN(t *testing.T, r net.Conn, n int) []byte {
	t.Helper()
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

func waitEnded(t *testing.T, s *spdyStream) error {
	t.Helper()
	select {
	case <-s.Ended():
		return s.Err()
	case <-time.After(5 * time.Second):
		t.Fatalf("stream %d did not end", s.id)
		return nil
	}
}

func TestSPDYDictionary(t *testing.T) {
	t.Parallel()
	// Peers check the dictionary by its Adler-32 (RFC 1950's DICTID): the one every SPDY/3
	// implementation uses.
	d := spdyDictionary()
	if len(d) != 1423 || adler32.Checksum(d) != 0xe3c6a7c2 {
		t.Fatalf("dictionary: %d bytes, Adler-32 %#x; want 1423 bytes, 0xe3c6a7c2", len(d), adler32.Checksum(d))
	}
}

func TestSPDYOpenStreams(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	done := make(chan error, 1)
	go func() {
		_, err := c.openStreams(
			streamRequest{headers: []string{"streamType", "error", "port", "5432", "requestID", "7"}, out: io.Discard, fin: true},
			streamRequest{headers: []string{"streamType", "data", "port", "5432", "requestID", "7"}, out: io.Discard},
		)
		done <- err
	}()
	// Both SYN_STREAMs come in one write.
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1<<10)
	n, err := p.conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	frameLen := func(b []byte) int { return spdyHeaderLen + (int(b[5])<<16 | int(b[6])<<8 | int(b[7])) }
	if first := frameLen(buf); n < first+spdyHeaderLen || n != first+frameLen(buf[first:]) {
		t.Fatalf("one write of %d bytes: want two whole frames", n)
	}
	p.conn = &prefixConn{Conn: p.conn, r: bytes.NewReader(buf[:n])}
	for i, want := range []struct {
		id    uint32
		flags byte
		typ   string
	}{{1, spdyFlagFin, "error"}, {3, 0, "data"}} {
		f := p.expect(spdySynStream)
		if f.word(0) != want.id || f.word(1) != 0 || f.flags != want.flags {
			t.Fatalf("SYN_STREAM %d: stream %d, associated %d, flags %#x; want stream %d, flags %#x", i, f.word(0), f.word(1), f.flags, want.id, want.flags)
		}
		h := p.headers(f)
		if want := []string{"streamtype", want.typ, "port", "5432", "requestid", "7"}; !slices.Equal(h, want) {
			t.Fatalf("SYN_STREAM %d headers %q, want %q", i, h, want)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("openStreams returned before the replies: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	p.write(controlFrame(spdySynReply, 0, 1, 0))
	p.write(controlFrame(spdySynReply, 0, 3, 0))
	if err := <-done; err != nil {
		t.Fatalf("openStreams: %v", err)
	}

	// The compression context carries over to the next streams.
	go func() {
		_, err := c.openStreams(streamRequest{headers: []string{"streamType", "data", "port", "5432", "requestID", "8"}, out: io.Discard})
		done <- err
	}()
	f := p.expect(spdySynStream)
	if h := p.headers(f); f.word(0) != 5 || !slices.Equal(h, []string{"streamtype", "data", "port", "5432", "requestid", "8"}) {
		t.Fatalf("third stream: id %d, headers %q", f.word(0), h)
	}
	p.write(controlFrame(spdySynReply, 0, 5, 0))
	if err := <-done; err != nil {
		t.Fatalf("openStreams: %v", err)
	}
}

// prefixConn reads r before the connection.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if n, err := c.r.Read(p); n > 0 || err != io.EOF {
		return n, err
	}
	return c.Conn.Read(p)
}

func TestSPDYStreamRefused(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	done := make(chan error, 1)
	go func() {
		_, err := c.openStreams(
			streamRequest{headers: []string{"streamType", "error"}, out: io.Discard, fin: true},
			streamRequest{headers: []string{"streamType", "data"}, out: io.Discard},
		)
		done <- err
	}()
	p.expect(spdySynStream)
	p.expect(spdySynStream)
	// The server takes the error stream and refuses the data stream.
	p.write(controlFrame(spdySynReply, 0, 1, 0), controlFrame(spdyRstStream, 0, 3, spdyRefusedStream))
	// The stream it took is reset.
	if f := p.expect(spdyRstStream); f.word(0) != 1 || f.word(1) != spdyCancel {
		t.Fatalf("RST_STREAM stream %d status %d, want stream 1, status %d", f.word(0), f.word(1), spdyCancel)
	}
	err := <-done
	var rst streamResetError
	if !errors.As(err, &rst) || rst != spdyRefusedStream {
		t.Fatalf("openStreams: %v, want the refusal", err)
	}
	// And the connection carries on.
	_, data, _, local := openPair(t, c, p)
	p.write(dataFrame(data.id, 0, []byte("still here")))
	if got := readN(t, local, 10); string(got) != "still here" {
		t.Fatalf("got %q", got)
	}
}

func TestSPDYData(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	errStream, data, errMsg, local := openPair(t, c, p)

	// Server to client: straight to the client's socket, whole or in pieces, small or larger
	// than the read buffer.
	p.write(dataFrame(data.id, 0, []byte("hello")))
	if got := readN(t, local, 5); string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), (3*spdyReadBuffer)/16+1)
	go func() {
		f := dataFrame(data.id, 0, big)
		for len(f) > 0 { // the frame in uneven pieces
			n := min(len(f), 1+len(f)%7919)
			if _, err := p.conn.Write(f[:n]); err != nil {
				return
			}
			f = f[n:]
		}
	}()
	if got := readN(t, local, len(big)); !bytes.Equal(got, big) {
		t.Fatal("large frame corrupted")
	}
	if n := data.received.Load(); n != int64(5+len(big)) {
		t.Fatalf("received %d bytes, want %d", n, 5+len(big))
	}

	// Client to server: each read of the client's socket is one DATA frame, in one write;
	// the client's EOF is a FIN.
	sent := make(chan error, 1)
	go func() {
		sent <- data.sendFrom(strings.NewReader("query"), make([]byte, spdyHeaderLen+3))
	}()
	for _, want := range []string{"que", "ry"} {
		_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 64)
		n, err := p.conn.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		if want := dataFrame(data.id, 0, []byte(want)); !bytes.Equal(b[:n], want) {
			t.Fatalf("write %x, want one frame %x", b[:n], want)
		}
	}
	if f := p.expect(0); f.id != data.id || f.flags != spdyFlagFin || len(f.payload) != 0 {
		t.Fatalf("got %+v, want an empty DATA frame with FIN", f)
	}
	if err := <-sent; err != nil {
		t.Fatalf("sendFrom: %v", err)
	}

	// The server finishes: FIN on both streams, an empty error stream.
	select {
	case <-data.Ended():
		t.Fatal("the data stream ended before the server's FIN")
	default:
	}
	p.write(dataFrame(data.id, spdyFlagFin, nil), dataFrame(errStream.id, spdyFlagFin, nil))
	if err := waitEnded(t, data); err != nil {
		t.Fatalf("data stream: %v", err)
	}
	if err := waitEnded(t, errStream); err != nil || errMsg.String() != "" {
		t.Fatalf("error stream: %v, %q", err, errMsg)
	}
	// Closed both ways, so resetting sends nothing: the next frame is the next SYN_STREAM.
	data.reset()
	errStream.reset()
	openPair(t, c, p)
}

func TestSPDYErrorStream(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	errStream, data, errMsg, _ := openPair(t, c, p)
	// What the kubelet does when it cannot reach the pod's port: a message on the error
	// stream, then both streams reset.
	p.write(dataFrame(errStream.id, 0, []byte("error forwarding port 5432: connection refused")),
		controlFrame(spdyRstStream, 0, data.id, spdyCancel), controlFrame(spdyRstStream, 0, errStream.id, spdyCancel))
	var rst streamResetError
	if err := waitEnded(t, data); !errors.As(err, &rst) {
		t.Fatalf("data stream: %v, want a reset", err)
	}
	if err := waitEnded(t, errStream); !errors.As(err, &rst) {
		t.Fatalf("error stream: %v, want a reset", err)
	}
	if got := errMsg.String(); got != "error forwarding port 5432: connection refused" {
		t.Fatalf("error message %q", got)
	}
	// Reset streams are gone: nothing is sent for them, and late data for them is dropped.
	data.reset()
	p.write(dataFrame(data.id, 0, []byte("late")))
	openPair(t, c, p)

	// A long message is cut short.
	errMsg = &errorMessage{}
	_, _ = errMsg.Write(bytes.Repeat([]byte("x"), 3*maxErrorMessage))
	if len(errMsg.String()) != maxErrorMessage {
		t.Fatalf("error message of %d bytes kept", len(errMsg.String()))
	}
}

func TestSPDYResetByClient(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	_, data, _, local := openPair(t, c, p)
	go data.reset()
	if f := p.expect(spdyRstStream); f.word(0) != data.id || f.word(1) != spdyCancel {
		t.Fatalf("RST_STREAM stream %d status %d, want stream %d, status %d", f.word(0), f.word(1), data.id, spdyCancel)
	}
	if err := waitEnded(t, data); !errors.Is(err, errStreamReset) {
		t.Fatalf("data stream: %v", err)
	}
	// Data that was in flight is dropped, not written to the client.
	p.write(dataFrame(data.id, 0, []byte("late")))
	_ = local.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := local.Read(make([]byte, 8)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes (%v) after the reset", n, err)
	}
}

func TestSPDYClientGoneAway(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	_, data, _, local := openPair(t, c, p)
	// The client's socket fails: the stream ends, the connection carries on.
	_ = local.Close()
	p.write(dataFrame(data.id, 0, []byte("answer")))
	if err := waitEnded(t, data); err == nil {
		t.Fatal("the stream ended cleanly although its client is gone")
	}
	p.write(dataFrame(data.id, 0, []byte("more")))
	openPair(t, c, p)
}

func TestSPDYPing(t *testing.T) {
	t.Parallel()
	_, p := newTestConn(t, 20*time.Millisecond)
	// The client's pings: odd IDs, one per period.
	for _, want := range []uint32{1, 3} {
		if f := p.expect(spdyPing); f.word(0) != want {
			t.Fatalf("ping %d, want %d", f.word(0), want)
		}
	}
	// The server's pings are answered; echoes of the client's own are not.
	p.write(controlFrame(spdyPing, 0, 5), controlFrame(spdyPing, 0, 42))
	for {
		f := p.expect(spdyPing)
		if f.word(0) == 42 {
			break
		}
		if f.word(0)%2 == 0 {
			t.Fatalf("answered ping %d", f.word(0))
		}
	}
}

func TestSPDYIgnoresWhatPortForwardingDoesNotUse(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	_, data, _, local := openPair(t, c, p)
	// SETTINGS, WINDOW_UPDATE, HEADERS (with a header block it does not decode), a NOOP and
	// an unknown type: all skipped.
	p.write(
		controlFrame(4, 0, 1, 1<<24|7, 65536),
		controlFrame(9, 0, data.id, 65536),
		controlFrame(8, 0, data.id, 0xdeadbeef, 0xfeedface),
		controlFrame(5, 0),
		controlFrame(0x7ff, 0, 1, 2, 3),
		dataFrame(data.id, 0, []byte("ok")),
	)
	if got := readN(t, local, 2); string(got) != "ok" {
		t.Fatalf("got %q", got)
	}
	// A stream opened by the server is refused.
	p.write(controlFrame(spdySynStream, 0, 2, 0, 0))
	if f := p.expect(spdyRstStream); f.word(0) != 2 || f.word(1) != spdyRefusedStream {
		t.Fatalf("RST_STREAM stream %d status %d, want stream 2 refused", f.word(0), f.word(1))
	}
	// A SYN_REPLY with FIN: the server will send nothing on that stream.
	done := make(chan []*spdyStream, 1)
	go func() {
		st, err := c.openStreams(streamRequest{headers: []string{"streamType", "data"}, out: io.Discard})
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	f := p.expect(spdySynStream)
	p.write(controlFrame(spdySynReply, spdyFlagFin, f.word(0), 0))
	if st := <-done; st != nil {
		if err := waitEnded(t, st[0]); err != nil {
			t.Fatalf("stream after SYN_REPLY with FIN: %v", err)
		}
	}
}

func TestSPDYGoAway(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	_, first, _, local := openPair(t, c, p)
	done := make(chan error, 1)
	go func() {
		_, err := c.openStreams(streamRequest{headers: []string{"streamType", "data"}, out: io.Discard})
		done <- err
	}()
	p.expect(spdySynStream)
	// The server goes away: the last stream it took is the first pair's data stream.
	p.write(controlFrame(spdyGoAway, 0, first.id, 0))
	if err := <-done; !errors.Is(err, errGoAway) {
		t.Fatalf("stream past the GOAWAY: %v", err)
	}
	if _, err := c.openStreams(streamRequest{out: io.Discard}); !errors.Is(err, errGoAway) {
		t.Fatalf("new stream after GOAWAY: %v", err)
	}
	// Streams it took carry on.
	p.write(dataFrame(first.id, 0, []byte("bye")))
	if got := readN(t, local, 3); string(got) != "bye" {
		t.Fatalf("got %q", got)
	}
}

func TestSPDYConnectionEnds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		end  func(p *fakePeer)
		want string
	}{
		{"closed by the server", func(p *fakePeer) { _ = p.conn.Close() }, "server closed the connection"},
		{"cut mid-frame", func(p *fakePeer) { p.write(dataFrame(3, 0, []byte("abc"))[:9]); _ = p.conn.Close() }, "unexpected EOF"},
		{"wrong version", func(p *fakePeer) { p.write([]byte{0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 2}) }, "version 2"},
		{"short control frame", func(p *fakePeer) { p.write(controlFrame(spdyRstStream, 0, 1)) }, "short"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, p := newTestConn(t, time.Hour)
			errStream, data, _, _ := openPair(t, c, p)
			tt.end(p)
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the connection did not end")
			}
			for _, s := range []*spdyStream{errStream, data} {
				if err := waitEnded(t, s); err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("stream %d: %v, want %q", s.id, err, tt.want)
				}
			}
			if _, err := c.openStreams(streamRequest{out: io.Discard}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("openStreams on an ended connection: %v", err)
			}
		})
	}
}

// TestSPDYAgainstSpdystream runs the client against the SPDY server the kubelet runs
// (spdystream, through apimachinery's httpstream/spdy), over TCP: streams opened in pairs as the
// port-forward server expects them, header blocks in one compression context, data both ways,
// half-close, and a reset.
func TestSPDYAgainstSpdystream(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type accepted struct {
		headers map[string]string
		stream  httpstream.Stream
	}
	streams := make(chan accepted, 16)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		srv, err := httpstreamspdy.NewServerConnection(conn, func(s httpstream.Stream, _ <-chan struct{}) error {
			h := map[string]string{}
			for _, k := range []string{"streamType", "port", "requestID"} {
				h[k] = s.Headers().Get(k)
			}
			streams <- accepted{h, s}
			return nil
		})
		if err != nil {
			t.Error(err)
			return
		}
		<-srv.CloseChan()
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newSPDYConn(conn, time.Hour)
	defer c.Close()

	for i := range 3 {
		id := strconv.Itoa(i)
		errMsg := &errorMessage{}
		local, client := net.Pipe()
		st, err := c.openStreams(
			streamRequest{headers: []string{"streamType", "error", "port", "5432", "requestID", id}, out: errMsg, fin: true},
			streamRequest{headers: []string{"streamType", "data", "port", "5432", "requestID", id}, out: local},
		)
		if err != nil {
			t.Fatalf("pair %d: %v", i, err)
		}
		var srvErr, srvData httpstream.Stream
		for range 2 {
			a := <-streams
			if a.headers["port"] != "5432" || a.headers["requestID"] != id {
				t.Fatalf("pair %d: server saw headers %v", i, a.headers)
			}
			switch a.headers["streamType"] {
			case "error":
				srvErr = a.stream
			case "data":
				srvData = a.stream
			default:
				t.Fatalf("pair %d: server saw headers %v", i, a.headers)
			}
		}
		if srvErr == nil || srvData == nil {
			t.Fatalf("pair %d: the server did not get one stream of each type", i)
		}
		// The error stream is half-closed from the start: the server reads EOF on it.
		if b, err := io.ReadAll(srvErr); err != nil || len(b) != 0 {
			t.Fatalf("pair %d: server read %q, %v from the error stream", i, b, err)
		}
		if i == 2 {
			// A reset: the server's reads end.
			st[1].reset()
			if _, err := io.ReadAll(srvData); err != nil {
				t.Fatalf("server read after reset: %v", err)
			}
			_ = client.Close()
			continue
		}
		// The server echoes the data stream until the client's FIN, then finishes both.
		go func() {
			_, _ = io.Copy(srvData, srvData)
			_ = srvData.Close()
			_ = srvErr.Close()
		}()
		msg := strings.Repeat("echo ", 20000)
		go func() { _ = st[1].sendFrom(strings.NewReader(msg), make([]byte, spdyHeaderLen+copyBufferSize)) }()
		if got := readN(t, client, len(msg)); string(got) != msg {
			t.Fatalf("pair %d: echo corrupted", i)
		}
		for _, s := range st {
			if err := waitEnded(t, s); err != nil {
				t.Fatalf("pair %d: stream %d: %v", i, s.id, err)
			}
		}
		if errMsg.String() != "" {
			t.Fatalf("pair %d: error stream %q", i, errMsg)
		}
		_ = client.Close()
	}
}

// The tests below are about a client that stops reading. They use the fake peer over
// net.Pipe (no kubelet needed, and every frame under the test's control) and, for the client
// sockets, net.Pipe too, whose writes wait until the other end reads: a client that does not
// read is one whose end nobody reads, and the stream's writer goroutine is the one that waits
// (net.Pipe has no TryWrite, so everything for it goes through the queue), or real loopback
// sockets with raw writes (TryWrite: the read loop's own path). The bound on a backlog is
// lowered to keep them quick.

const testMaxQueued = 64 << 10

// lowQueueBound lowers c's backlog bound. Called before the peer sends any data: the read
// loop reads it only after reading a frame the peer wrote after this (net.Pipe synchronises).
func lowQueueBound(c *spdyConn) { c.maxQueued = testMaxQueued }

// sendData has the peer send n bytes on stream id in 32 KiB frames, from a goroutine (the
// read loop may not take them all for a while), the last frame with FIN if fin. The channel
// is closed when everything is written.
func sendData(p *fakePeer, id uint32, n int, fin bool) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		payload := bytes.Repeat([]byte("0123456789abcdef"), 2<<10)
		for n > 0 {
			k := min(n, len(payload))
			n -= k
			var flags byte
			if fin && n == 0 {
				flags = spdyFlagFin
			}
			if _, err := p.conn.Write(dataFrame(id, flags, payload[:k])); err != nil {
				return
			}
		}
	}()
	return done
}

// waitBacklog waits until at least n bytes are queued for s.
func waitBacklog(t *testing.T, s *spdyStream, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if q, _ := s.backlog(); q >= n {
			return
		}
		if time.Now().After(deadline) {
			q, _ := s.backlog()
			t.Fatalf("stream %d: %d bytes queued, want at least %d", s.id, q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A client that stops reading while another client's streams are open on the same
// connection: its stream is reset once its backlog passes the bound, and the other client's
// data keeps flowing, before and after.
func TestSPDYClientNotReadingShared(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	lowQueueBound(c)
	_, stalled, _, stalledLocal := openPair(t, c, p) // nobody reads stalledLocal
	_, other, _, otherLocal := openPair(t, c, p)

	sent := sendData(p, stalled.id, 16*testMaxQueued, false)
	if f := p.expect(spdyRstStream); f.word(0) != stalled.id || f.word(1) != spdyCancel {
		t.Fatalf("RST_STREAM stream %d status %d, want stream %d, status %d", f.word(0), f.word(1), stalled.id, spdyCancel)
	}
	if err := waitEnded(t, stalled); !errors.Is(err, errClientNotReading) {
		t.Fatalf("stalled stream: %v, want %v", err, errClientNotReading)
	}
	select {
	case <-sent: // the rest was read and dropped: the read loop did not wait for the client
	case <-time.After(5 * time.Second):
		t.Fatal("the read loop stopped reading")
	}
	p.write(dataFrame(other.id, 0, []byte("hello")))
	if got := readN(t, otherLocal, 5); string(got) != "hello" {
		t.Fatalf("other client got %q", got)
	}
	// The writer that was stuck on the stalled client ends with its connection, as pipe
	// closes it.
	_ = stalledLocal.Close()
	stalled.reset() // sends nothing: the stream was reset already
	stalled.waitWritten()
	other.waitWritten() // "hello" went through a writer too: net.Pipe has no TryWrite
	if n := c.backlogged.Load(); n != 0 {
		t.Fatalf("%d streams still have a writer", n)
	}
	openPair(t, c, p)
}

// A client alone on its connection that reads slowly is not reset: the read loop waits for
// it (the server is held back, as by TCP), every byte arrives in order, and the server's FIN
// ends the stream only once the client has read everything.
func TestSPDYSlowClientAlone(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	lowQueueBound(c)
	_, data, _, local := openPair(t, c, p)
	const total = 16 * testMaxQueued
	sent := sendData(p, data.id, total, true)
	// Nobody reads yet: the backlog passes the bound, and the read loop waits.
	waitBacklog(t, data, testMaxQueued)
	select {
	case <-sent:
		t.Fatal("the peer wrote everything: the read loop did not wait for the lone client")
	case <-data.Ended():
		t.Fatalf("the lone client's stream ended: %v", data.Err())
	default:
	}
	want := bytes.Repeat([]byte("0123456789abcdef"), total/16)
	got := make([]byte, 0, total)
	buf := make([]byte, 4096)
	_ = local.SetReadDeadline(time.Now().Add(30 * time.Second))
	for len(got) < total-len(buf) {
		n, err := local.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	select {
	case <-data.Ended():
		t.Fatalf("the stream ended with %d bytes unread: %v", total-len(got), data.Err())
	default:
	}
	got = append(got, readN(t, local, total-len(got))...)
	if !bytes.Equal(got, want) {
		t.Fatal("data corrupted or out of order")
	}
	if err := waitEnded(t, data); err != nil {
		t.Fatalf("stream: %v", err)
	}
	<-sent
}

// A lone client's stream whose backlog holds up the read loop is reset as soon as another
// client's streams open on the connection: the new streams are not stalled (their replies
// come through the read loop).
func TestSPDYClientNotReadingThenShared(t *testing.T) {
	t.Parallel()
	c, p := newTestConn(t, time.Hour)
	lowQueueBound(c)
	_, stalled, _, stalledLocal := openPair(t, c, p)
	sent := sendData(p, stalled.id, 16*testMaxQueued, false)
	waitBacklog(t, stalled, testMaxQueued)
	_, other, _, otherLocal := openPair(t, c, p)
	if f := p.expect(spdyRstStream); f.word(0) != stalled.id {
		t.Fatalf("RST_STREAM for stream %d, want %d", f.word(0), stalled.id)
	}
	if err := waitEnded(t, stalled); !errors.Is(err, errClientNotReading) {
		t.Fatalf("stalled stream: %v", err)
	}
	<-sent
	p.write(dataFrame(other.id, 0, []byte("hello")))
	if got := readN(t, otherLocal, 5); string(got) != "hello" {
		t.Fatalf("other client got %q", got)
	}
	_ = stalledLocal.Close()
	stalled.waitWritten()
}
