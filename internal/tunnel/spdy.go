package tunnel

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the client end of SPDY/3.1 (the protocol of the pods/portforward subresource),
// reduced to what port forwarding uses, in place of client-go's httpstream/spdy and the
// spdystream package under it. spdystream hands every frame it reads from its read loop to a
// worker goroutine (through a priority queue), from there to the stream's reader (through a
// channel), and wakes an idle-timer goroutine for every frame read or written: four goroutine
// wake-ups where one will do, and on a small query the scheduler's work is a good part of the
// CPU a port-forward client spends. Here one goroutine per upgraded connection reads the frames
// and writes a data stream's payload straight to the local client socket, as far as the socket
// takes it without waiting; every frame is written whole, header and payload together, in one
// Write.
//
// The read loop never waits for one client's socket while the connection carries other
// clients' streams: SPDY/3 as the kubelet speaks it has no per-stream flow control, so a read
// loop that waited for a client that stopped reading would stall every stream on the
// connection. What a client's socket does not take at once is copied to a queue of that
// stream's own, written by a goroutine of its own (started only when there is a backlog, so
// the common case costs no copy and no goroutine wake-up). A queue is bounded (maxQueued):
//
//   - when every open stream on the connection belongs to the same client (the streams opened
//     together by one openStreams), the read loop waits for that client's queue to drain below
//     half the bound: TCP's flow control reaches the server, and a slow client slows only
//     itself, as before;
//   - otherwise the stream is reset (RST_STREAM to the server, ended here with
//     errClientNotReading): the client's connection ends, and the others carry on. A client
//     that stops reading for good cannot be paused alone on a shared connection, and buffering
//     for it without bound would only move the problem to memory.
//
// What the port-forward protocol needs of SPDY, and so all this speaks:
//
//   - SYN_STREAM, to open a stream, with a header block (streamtype, port, requestid) in a
//     zlib stream with the SPDY/3 dictionary, one stream for the whole connection; the
//     server's SYN_REPLY accepts it, a RST_STREAM refuses it.
//   - DATA frames both ways, and the FIN flag that ends one direction of a stream: a client's
//     half-close reaches the server, and the end of the pod's side reaches the client.
//   - RST_STREAM both ways, to abandon a stream; GOAWAY from the server (no new streams).
//   - PING: the server's are answered, and the client sends its own every ping period, as
//     client-go does, so that the API server's and kubelet's idle timers do not fire.
//
// The header blocks the server sends (in SYN_REPLY and HEADERS frames) say nothing port
// forwarding needs, so they are skipped without being decompressed. There is no flow control:
// SPDY/3's WINDOW_UPDATE and SETTINGS frames are ignored, as spdystream (the kubelet's end)
// ignores them and never sends them.

const (
	spdyVersion   = 3
	spdyHeaderLen = 8 // every frame starts with 8 bytes; the payload length is in bytes 5 to 7

	// Control frame types.
	spdySynStream = 1
	spdySynReply  = 2
	spdyRstStream = 3
	spdyPing      = 6
	spdyGoAway    = 7

	spdyFlagFin = 0x01

	// RST_STREAM status codes.
	spdyProtocolError = 1
	spdyRefusedStream = 3
	spdyCancel        = 5

	spdyMaxStreamID = 1<<31 - 1

	// streamReplyTimeout bounds the wait for the server to accept a new stream (client-go's
	// createStreamResponseTimeout).
	streamReplyTimeout = 30 * time.Second
	// spdyReadBuffer holds a whole data frame as the kubelet writes them (32 KiB and a header),
	// so that its payload reaches the client in one write.
	spdyReadBuffer = 64 << 10
	// maxQueued bounds the data of one stream that waits for its client's socket (see the top
	// of this file), on top of what the socket's own buffers hold (a few MiB on loopback). A
	// client that reads, however slowly, drains it; one that stopped reading fills it in
	// milliseconds.
	maxQueued = 1 << 20
	// queueChunk is the size of the buffers a backlog is kept in: a few frames each, so that
	// the writer's system calls are large.
	queueChunk = 64 << 10
)

var (
	errStreamReset = errors.New("stream reset")
	errGoAway      = errors.New("the server is closing the connection (GOAWAY)")
	// errClientNotReading ends a stream whose client stopped reading while its upgraded
	// connection carries other clients' streams, which waiting for it would have stalled.
	errClientNotReading = errors.New("the client stopped reading")
)

// tryWriter is a destination that can write without waiting: it writes what it can take at
// once, and returns n < len(p) with a nil error when it cannot take the rest now (rawConn on
// Linux, errorMessage). The read loop writes to such a destination itself; to any other it
// hands the data to the stream's writer goroutine.
type tryWriter interface {
	TryWrite(p []byte) (int, error)
}

// streamResetError is a RST_STREAM from the server.
type streamResetError uint32

func (e streamResetError) Error() string {
	switch e {
	case spdyProtocolError:
		return "stream reset by the server: protocol error"
	case spdyRefusedStream:
		return "stream refused by the server"
	case spdyCancel:
		return "stream cancelled by the server"
	}
	return fmt.Sprintf("stream reset by the server (status %d)", uint32(e))
}

// spdyConn is the client end of one upgraded connection. It is safe for concurrent use.
type spdyConn struct {
	conn net.Conn
	br   *bufio.Reader // read by the read loop only

	// wmu makes each frame's bytes reach conn together, and keeps SYN_STREAMs in the order of
	// their stream IDs and of the compression context.
	wmu    sync.Mutex
	nextID uint32       // the next stream's ID: odd, increasing; guarded by wmu
	zbuf   bytes.Buffer // compressed header block; guarded by wmu
	zw     *zlib.Writer // the connection's header compression context; guarded by wmu
	wbuf   []byte       // frames being built; guarded by wmu

	mu       sync.Mutex
	streams  map[uint32]*spdyStream // open streams; nil once the connection has ended
	groups   int                    // clients with open streams: see streamGroup
	goneAway bool                   // the server sent GOAWAY: no new streams
	err      error                  // why the connection ended; set before done is closed

	// maxQueued is the bound on a stream's backlog (the constant maxQueued; tests lower it).
	maxQueued int
	// backlogged counts the streams whose client's socket is behind (a writer goroutine is
	// running): a session that has one is a poor choice for a new client.
	backlogged atomic.Int32
	// wake wakes the read loop when it waits for a backlog to drain: the backlog shrank, the
	// stream ended, or another client's streams opened on the connection.
	wake chan struct{}

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	done      chan struct{} // closed when the connection has ended
}

// streamGroup is the streams of one client connection, opened together by one openStreams
// (an error stream and a data stream). While the connection carries one group only, the read
// loop may wait for that client; otherwise it must not.
type streamGroup struct {
	open int // streams of the group still in spdyConn.streams; guarded by spdyConn.mu
}

// newSPDYConn starts SPDY on an upgraded connection: a read loop, and a PING every pingPeriod.
func newSPDYConn(conn net.Conn, pingPeriod time.Duration) *spdyConn {
	c := &spdyConn{
		conn:      conn,
		br:        bufio.NewReaderSize(conn, spdyReadBuffer),
		nextID:    1,
		streams:   map[uint32]*spdyStream{},
		maxQueued: maxQueued,
		wake:      make(chan struct{}, 1),
		closed:    make(chan struct{}),
		done:      make(chan struct{}),
	}
	// Header blocks are a few dozen bytes, two per client connection: they are written as
	// stored (uncompressed) deflate blocks, which any zlib reader takes. Any other level would
	// cost more to set up (it fills half a megabyte of match tables from the dictionary) than
	// it could ever save. The dictionary is still declared, as SPDY/3 requires.
	zw, err := zlib.NewWriterLevelDict(&c.zbuf, zlib.NoCompression, spdyDict)
	if err != nil {
		panic(err) // only for an invalid level
	}
	c.zw = zw
	go c.readLoop()
	go c.ping(pingPeriod)
	return c
}

// Close closes the upgraded connection: every stream on it ends.
func (c *spdyConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.conn.Close()
}

// wakeReader wakes the read loop if it waits for a backlog (wake has room for one signal; the
// read loop checks its condition again after each).
func (c *spdyConn) wakeReader() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// forget takes s out of the open streams, and reports whether it was open. Called with mu
// held.
func (c *spdyConn) forget(s *spdyStream) bool {
	if c.streams[s.id] != s {
		return false
	}
	delete(c.streams, s.id)
	if s.group.open--; s.group.open == 0 {
		c.groups--
	}
	return true
}

// Done is closed when the connection has ended.
func (c *spdyConn) Done() <-chan struct{} { return c.done }

// streamRequest describes one stream to open.
type streamRequest struct {
	headers []string  // name, value, name, value...
	out     io.Writer // receives the stream's data: see spdyStream.deliver
	fin     bool      // the client sends nothing on it
}

// openStreams opens streams, their SYN_STREAMs written together, and waits until the server
// has accepted all of them. On failure none stays open.
func (c *spdyConn) openStreams(reqs ...streamRequest) ([]*spdyStream, error) {
	streams := make([]*spdyStream, len(reqs))
	c.wmu.Lock()
	c.mu.Lock()
	var err error
	switch {
	case c.streams == nil:
		err = c.err
	case c.goneAway:
		err = errGoAway
	case c.nextID+2*uint32(len(reqs)) > spdyMaxStreamID:
		err = errors.New("no stream IDs left on the connection")
	}
	if err != nil {
		c.mu.Unlock()
		c.wmu.Unlock()
		return nil, err
	}
	group := &streamGroup{open: len(reqs)}
	c.groups++
	for i, r := range reqs {
		s := &spdyStream{conn: c, id: c.nextID, group: group, out: r.out, sentFin: r.fin, replied: make(chan struct{}), ended: make(chan struct{})}
		s.tryOut, _ = r.out.(tryWriter)
		c.nextID += 2
		c.streams[s.id] = s
		streams[i] = s
	}
	c.mu.Unlock()
	// A read loop waiting for a lone client's backlog must now stop waiting (the replies to
	// these streams come through it).
	c.wakeReader()
	b := c.wbuf[:0]
	for i, r := range reqs {
		b = c.appendSynStream(b, streams[i].id, r.headers, r.fin)
	}
	c.wbuf = b
	_, err = c.conn.Write(b)
	c.wmu.Unlock()
	if err != nil {
		_ = c.Close()
		return nil, err
	}

	timer := time.NewTimer(streamReplyTimeout)
	defer timer.Stop()
	for _, s := range streams {
		select {
		case <-s.replied:
		case <-s.ended:
			select {
			case <-s.replied: // accepted, and already ended: its data was delivered
			default:
				err = s.err
			}
		case <-timer.C:
			err = errors.New("timed out waiting for the server to accept the stream")
		}
		if err != nil {
			for _, s := range streams {
				s.reset()
			}
			return nil, err
		}
	}
	return streams, nil
}

// appendSynStream appends a SYN_STREAM frame. Called with wmu held.
func (c *spdyConn) appendSynStream(b []byte, id uint32, headers []string, fin bool) []byte {
	block := binary.BigEndian.AppendUint32(nil, uint32(len(headers)/2))
	for i, h := range headers {
		if i%2 == 0 {
			h = strings.ToLower(h) // SPDY header names are lower case
		}
		block = binary.BigEndian.AppendUint32(block, uint32(len(h)))
		block = append(block, h...)
	}
	c.zbuf.Reset()
	_, _ = c.zw.Write(block) // writes to a bytes.Buffer cannot fail
	_ = c.zw.Flush()         // ends the block on a byte boundary, for the server to decode now
	var flags byte
	if fin {
		flags = spdyFlagFin
	}
	b = appendControlHeader(b, spdySynStream, flags, 10+c.zbuf.Len())
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, 0) // associated-to stream: none
	b = append(b, 0, 0)                     // priority 0, credential slot 0
	return append(b, c.zbuf.Bytes()...)
}

func appendControlHeader(b []byte, typ uint16, flags byte, length int) []byte {
	b = binary.BigEndian.AppendUint16(b, 0x8000|spdyVersion)
	b = binary.BigEndian.AppendUint16(b, typ)
	return binary.BigEndian.AppendUint32(b, uint32(flags)<<24|uint32(length))
}

// putDataHeader fills in the header of a data frame of n payload bytes at the start of b.
func putDataHeader(b []byte, id uint32, flags byte, n int) {
	binary.BigEndian.PutUint32(b, id)
	binary.BigEndian.PutUint32(b[4:], uint32(flags)<<24|uint32(n))
}

// writeFrames writes whole frames. A failed write leaves the connection unusable: it is
// closed, which ends every stream on it.
func (c *spdyConn) writeFrames(b []byte) error {
	c.wmu.Lock()
	_, err := c.conn.Write(b)
	c.wmu.Unlock()
	if err != nil {
		_ = c.Close()
	}
	return err
}

// writeControl writes a control frame whose payload is two 32-bit words (RST_STREAM), or one
// (PING).
func (c *spdyConn) writeControl(typ uint16, words ...uint32) error {
	b := appendControlHeader(make([]byte, 0, spdyHeaderLen+8), typ, 0, 4*len(words))
	for _, w := range words {
		b = binary.BigEndian.AppendUint32(b, w)
	}
	return c.writeFrames(b)
}

// ping sends a PING every period until the connection ends. The replies are not waited for:
// the traffic is what keeps the connection open.
func (c *spdyConn) ping(period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for id := uint32(1); ; id += 2 { // client pings have odd IDs
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		if id > spdyMaxStreamID {
			id = 1
		}
		if c.writeControl(spdyPing, id) != nil {
			return
		}
	}
}

// readLoop reads frames until the connection ends, then ends every stream.
func (c *spdyConn) readLoop() {
	err := c.readFrames()
	if errors.Is(err, io.EOF) {
		err = errors.New("the server closed the connection")
	}
	_ = c.Close()
	c.mu.Lock()
	streams := c.streams
	c.streams = nil
	c.groups = 0
	c.err = err
	c.mu.Unlock()
	close(c.done)
	for _, s := range streams {
		s.end(err)
	}
}

func (c *spdyConn) readFrames() error {
	var h [spdyHeaderLen]byte
	for {
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return err
		}
		flags := h[4]
		length := int(h[5])<<16 | int(h[6])<<8 | int(h[7])
		if h[0]&0x80 == 0 {
			if err := c.readData(binary.BigEndian.Uint32(h[:4]), flags, length); err != nil {
				return err
			}
			continue
		}
		if v := binary.BigEndian.Uint16(h[:2]) & 0x7fff; v != spdyVersion {
			return fmt.Errorf("the server speaks SPDY version %d, not %d", v, spdyVersion)
		}
		if err := c.readControl(binary.BigEndian.Uint16(h[2:4]), flags, length); err != nil {
			return err
		}
	}
}

// readData passes a data frame's payload to its stream. Data for a stream that is no longer
// open (reset by the client, say) is dropped.
func (c *spdyConn) readData(id uint32, flags byte, length int) error {
	c.mu.Lock()
	s := c.streams[id]
	c.mu.Unlock()
	for length > 0 {
		p, err := c.br.Peek(min(length, c.br.Size()))
		if err != nil {
			return noEOF(err)
		}
		if s != nil && s.deliver(p) {
			if !c.awaitBacklog(s) {
				s = nil // reset: the rest of its data is dropped
			}
		}
		_, _ = c.br.Discard(len(p))
		length -= len(p)
	}
	if s != nil && flags&spdyFlagFin != 0 {
		c.remoteFin(s)
	}
	return nil
}

// awaitBacklog is called by the read loop when s's backlog has passed maxQueued. It waits for
// the backlog to drain below half of it while s's client is the only one on the connection,
// and resets s as soon as it is not: the read loop never waits for one client while another
// has streams open. It reports whether s is still open.
func (c *spdyConn) awaitBacklog(s *spdyStream) bool {
	for {
		queued, open := s.backlog()
		if !open {
			return false
		}
		if queued <= c.maxQueued/2 {
			return true
		}
		c.mu.Lock()
		shared := c.groups > 1
		c.mu.Unlock()
		if shared {
			c.resetNotReading(s, queued)
			return false
		}
		select {
		case <-c.wake:
		case <-s.ended:
		case <-c.closed:
			return false
		}
	}
}

// resetNotReading resets s, whose client stopped reading (queued bytes wait for it), so that
// the connection's other streams are not held up. The RST_STREAM is written from a goroutine:
// the read loop must not wait for the write lock (see readControl's PING).
func (c *spdyConn) resetNotReading(s *spdyStream, queued int) {
	c.mu.Lock()
	open := c.forget(s)
	c.mu.Unlock()
	s.end(fmt.Errorf("%w: %d KiB of the pod's data wait for it, and its upgraded connection carries other clients' connections, which waiting for it would stall", errClientNotReading, queued>>10))
	if open {
		go func() { _ = c.writeControl(spdyRstStream, s.id, spdyCancel) }()
	}
}

// remoteFin: the server will send nothing more on s. The stream ends once what it received
// has reached its client.
func (c *spdyConn) remoteFin(s *spdyStream) {
	c.mu.Lock()
	s.gotFin = true
	if s.sentFin {
		c.forget(s)
	}
	c.mu.Unlock()
	s.endAfterBacklog()
}

// readControl handles a control frame. Its payload is read as far as the fields used here;
// the rest (header blocks, unknown frame types) is skipped.
func (c *spdyConn) readControl(typ uint16, flags byte, length int) error {
	var p [8]byte
	n := min(length, len(p))
	if _, err := io.ReadFull(c.br, p[:n]); err != nil {
		return noEOF(err)
	}
	if _, err := c.br.Discard(length - n); err != nil {
		return noEOF(err)
	}
	if n < controlPayloadUsed(typ) {
		return fmt.Errorf("short SPDY control frame (type %d, %d bytes)", typ, length)
	}
	word := binary.BigEndian.Uint32(p[:4]) & 0x7fffffff
	switch typ {
	case spdySynReply:
		c.mu.Lock()
		s := c.streams[word]
		if s != nil && !s.accepted {
			s.accepted = true
			close(s.replied)
		}
		c.mu.Unlock()
		if s != nil && flags&spdyFlagFin != 0 {
			c.remoteFin(s)
		}
	case spdyRstStream:
		c.mu.Lock()
		s := c.streams[word]
		if s != nil {
			c.forget(s)
		}
		c.mu.Unlock()
		if s != nil {
			s.end(streamResetError(binary.BigEndian.Uint32(p[4:8])))
		}
	case spdyPing:
		if id := binary.BigEndian.Uint32(p[:4]); id%2 == 0 {
			// The server's (ours are odd, and their echoes need nothing). Answered from a
			// goroutine of its own: a read loop that waits for the write lock could deadlock
			// with a writer waiting for the server, which waits for us to read.
			go func() { _ = c.writeControl(spdyPing, id) }()
		}
	case spdyGoAway:
		// Streams past the last one the server took will never be answered.
		c.mu.Lock()
		c.goneAway = true
		var lost []*spdyStream
		for id, s := range c.streams {
			if id > word {
				lost = append(lost, s)
				c.forget(s)
			}
		}
		c.mu.Unlock()
		for _, s := range lost {
			s.end(errGoAway)
		}
	case spdySynStream:
		// The server opens no streams in port forwarding.
		go func() { _ = c.writeControl(spdyRstStream, word, spdyRefusedStream) }()
	}
	return nil
}

// controlPayloadUsed is how much of a control frame's payload readControl uses.
func controlPayloadUsed(typ uint16) int {
	switch typ {
	case spdyRstStream:
		return 8
	case spdySynStream, spdySynReply, spdyPing, spdyGoAway:
		return 4
	}
	return 0
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// spdyStream is one stream of a spdyConn. Its data is written to out by the connection's read
// loop, or by a writer goroutine of its own when out is behind (see deliver); the client's
// side is sent with sendFrom.
type spdyStream struct {
	conn   *spdyConn
	id     uint32
	group  *streamGroup
	out    io.Writer
	tryOut tryWriter // out, when it can write without waiting

	received atomic.Int64 // payload bytes received

	replied chan struct{} // closed when the server accepts the stream
	ended   chan struct{} // closed when nothing more will be received: see err
	endOnce sync.Once
	err     error // nil after the server's FIN; set before ended is closed

	// The data out has not taken yet, and its writer. Guarded by qmu.
	qmu     sync.Mutex
	queue   [][]byte      // waiting for out, oldest first, in chunks of queueChunk
	queued  int           // bytes in queue and in the writer's hands
	spare   [][]byte      // empty chunks, for reuse
	writing bool          // a writer goroutine owns out until queue is empty
	written chan struct{} // closed when that writer is done
	outErr  error         // out failed, or the stream was abandoned: data is dropped
	// finPending: the server's FIN came while data was queued; the writer ends the stream
	// once the data is out.
	finPending bool

	// Guarded by conn.mu. A stream leaves conn.streams when both sides have sent FIN, or
	// when it is reset by either side.
	accepted, sentFin, gotFin bool
}

// Ended is closed when the server will send nothing more on the stream and what it sent has
// reached out: it sent FIN (Err is nil), or reset the stream, or the stream was reset here
// (also when its client stopped reading on a shared connection: errClientNotReading), or the
// connection ended, or the stream's data could not be written to its destination.
func (s *spdyStream) Ended() <-chan struct{} { return s.ended }

// Err says why the stream ended; valid once Ended is closed.
func (s *spdyStream) Err() error { return s.err }

// end ends the stream. An error also abandons the data still queued for out.
func (s *spdyStream) end(err error) {
	s.endOnce.Do(func() {
		if err != nil {
			s.abandon(err)
		}
		s.err = err
		close(s.ended)
	})
}

// endAfterBacklog ends the stream cleanly (the server's FIN) once its queued data is out.
func (s *spdyStream) endAfterBacklog() {
	s.qmu.Lock()
	if s.writing {
		s.finPending = true
		s.qmu.Unlock()
		return
	}
	s.qmu.Unlock()
	s.end(nil)
}

// abandon drops the data queued for out, and whatever would be queued later. A writer that
// is under way stops after its current write (which ends when out is closed).
func (s *spdyStream) abandon(err error) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.outErr == nil {
		s.outErr = err
	}
	for _, b := range s.queue {
		s.queued -= len(b)
	}
	s.queue, s.spare = nil, nil
}

// deliver passes received data to out. Called by the read loop, which must not wait for out:
// when nothing is queued and out can write without waiting, the read loop writes itself, as
// much as out takes at once (usually all, with no copy and no other goroutine involved); the
// rest, and everything after it until the backlog is written, is copied to the queue, which
// a writer goroutine writes to out. It reports whether the backlog is over the bound: the
// read loop then calls awaitBacklog.
func (s *spdyStream) deliver(p []byte) bool {
	s.received.Add(int64(len(p)))
	s.qmu.Lock()
	if s.outErr != nil {
		s.qmu.Unlock()
		return false
	}
	if !s.writing && s.tryOut != nil {
		s.qmu.Unlock()
		// No writer runs, and only the read loop starts one: out is the read loop's.
		n, err := s.tryOut.TryWrite(p)
		if err != nil {
			s.end(err)
			return false
		}
		if n == len(p) {
			return false
		}
		p = p[n:]
		s.qmu.Lock()
		if s.outErr != nil { // abandoned meanwhile
			s.qmu.Unlock()
			return false
		}
	}
	s.enqueue(p)
	if !s.writing {
		s.writing = true
		s.written = make(chan struct{})
		s.conn.backlogged.Add(1)
		go s.writeBacklog()
	}
	over := s.queued > s.conn.maxQueued
	s.qmu.Unlock()
	return over
}

// enqueue copies p to the end of the queue. Called with qmu held.
func (s *spdyStream) enqueue(p []byte) {
	s.queued += len(p)
	for len(p) > 0 {
		last := len(s.queue) - 1
		if last < 0 || len(s.queue[last]) == cap(s.queue[last]) {
			var b []byte
			if n := len(s.spare); n > 0 {
				b, s.spare = s.spare[n-1], s.spare[:n-1]
			} else {
				b = make([]byte, 0, queueChunk)
			}
			s.queue = append(s.queue, b)
			last++
		}
		b := s.queue[last]
		n := min(len(p), cap(b)-len(b))
		s.queue[last] = append(b, p[:n]...)
		p = p[n:]
	}
}

// backlog is how much data waits for out, and whether the stream still delivers to it.
func (s *spdyStream) backlog() (queued int, open bool) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.queued, s.outErr == nil
}

// writeBacklog is the stream's writer: it writes the queue to out, oldest first, until the
// queue is empty, waking the read loop whenever the backlog is down to half the bound. A
// failed write ends the stream, as one by the read loop does.
func (s *spdyStream) writeBacklog() {
	c := s.conn
	var err error
	s.qmu.Lock()
	for len(s.queue) > 0 && s.outErr == nil {
		b := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.qmu.Unlock()
		_, err = s.out.Write(b)
		s.qmu.Lock()
		s.queued -= len(b)
		if s.outErr == nil {
			s.spare = append(s.spare, b[:0])
		}
		if err != nil && s.outErr == nil {
			s.outErr = err
		}
		if s.queued <= c.maxQueued/2 {
			c.wakeReader()
		}
	}
	if s.outErr != nil {
		for _, b := range s.queue {
			s.queued -= len(b)
		}
		s.queue = nil
	}
	s.writing = false
	fin := s.finPending && s.outErr == nil
	written := s.written
	s.qmu.Unlock()
	c.backlogged.Add(-1)
	switch {
	case err != nil:
		s.end(err)
	case fin:
		s.end(nil)
	}
	close(written)
	c.wakeReader()
}

// waitWritten waits until no writer goroutine is under way for the stream. Once the stream
// has been reset (or has ended with an error) none starts again.
func (s *spdyStream) waitWritten() {
	s.qmu.Lock()
	written := s.written // the last writer's; closed once it has finished everything
	s.qmu.Unlock()
	if written != nil {
		<-written
	}
}

// sendFrom sends what it reads from r as DATA frames until r ends, then sends FIN. buf is the
// frame buffer: each read goes after room for the frame header, so that header and payload go
// out together without a copy.
func (s *spdyStream) sendFrom(r io.Reader, buf []byte) error {
	for {
		n, err := r.Read(buf[spdyHeaderLen:])
		if n > 0 {
			putDataHeader(buf, s.id, 0, n)
			if err := s.conn.writeFrames(buf[:spdyHeaderLen+n]); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return s.closeWrite()
		}
		if err != nil {
			return err
		}
	}
}

// closeWrite sends FIN: the client will send nothing more.
func (s *spdyStream) closeWrite() error {
	c := s.conn
	c.mu.Lock()
	s.sentFin = true
	if s.gotFin {
		c.forget(s)
	}
	c.mu.Unlock()
	var b [spdyHeaderLen]byte
	putDataHeader(b[:], s.id, spdyFlagFin, 0)
	return c.writeFrames(b[:])
}

// reset abandons the stream: RST_STREAM is sent unless it is already closed both ways, and
// whatever is still queued for it or still arrives for it is dropped.
func (s *spdyStream) reset() {
	c := s.conn
	c.mu.Lock()
	open := c.forget(s)
	c.mu.Unlock()
	s.abandon(errStreamReset)
	s.end(errStreamReset)
	if open {
		_ = c.writeControl(spdyRstStream, s.id, spdyCancel)
	}
}

// spdyDict is spdyDictionary, built once.
var spdyDict = spdyDictionary()

// spdyDictionary is SPDY/3's zlib dictionary for header blocks (section 2.6.10.1 of the
// draft): the length-prefixed words of common header names and values, then a run of common
// values.
func spdyDictionary() []byte {
	words := []string{
		"options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
		"accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
		"cache-control", "connection", "content-base", "content-encoding", "content-language",
		"content-length", "content-location", "content-md5", "content-range", "content-type", "date",
		"etag", "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
		"if-range", "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
		"proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after", "server",
		"te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
		"www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
		"public", "set-cookie", "keep-alive", "origin",
	}
	const tail = "100101201202205206300302303304305306307402405406407408409410411412413414415416417" +
		"502504505203 Non-Authoritative Information204 No Content301 Moved Permanently" +
		"400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error" +
		"501 Not Implemented503 Service Unavailable" +
		"Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT" +
		"chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml," +
		"text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch" +
		"charset=utf-8charset=iso-8859-1,utf-,*,enq=0."
	var d []byte
	for _, w := range words {
		d = binary.BigEndian.AppendUint32(d, uint32(len(w)))
		d = append(d, w...)
	}
	return append(d, tail...)
}
