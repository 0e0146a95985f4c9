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
// and writes a data stream's payload straight to the local client socket; every frame is
// written whole, header and payload together, in one Write.
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
)

var (
	errStreamReset = errors.New("stream reset")
	errGoAway      = errors.New("the server is closing the connection (GOAWAY)")
)

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
	goneAway bool                   // the server sent GOAWAY: no new streams
	err      error                  // why the connection ended; set before done is closed

	done chan struct{} // closed when the connection has ended
}

// newSPDYConn starts SPDY on an upgraded connection: a read loop, and a PING every pingPeriod.
func newSPDYConn(conn net.Conn, pingPeriod time.Duration) *spdyConn {
	c := &spdyConn{
		conn:    conn,
		br:      bufio.NewReaderSize(conn, spdyReadBuffer),
		nextID:  1,
		streams: map[uint32]*spdyStream{},
		done:    make(chan struct{}),
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
func (c *spdyConn) Close() error { return c.conn.Close() }

// Done is closed when the connection has ended.
func (c *spdyConn) Done() <-chan struct{} { return c.done }

// streamRequest describes one stream to open.
type streamRequest struct {
	headers []string  // name, value, name, value...
	out     io.Writer // receives the stream's data, from the read loop
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
	for i, r := range reqs {
		s := &spdyStream{conn: c, id: c.nextID, out: r.out, sentFin: r.fin, replied: make(chan struct{}), ended: make(chan struct{})}
		c.nextID += 2
		c.streams[s.id] = s
		streams[i] = s
	}
	c.mu.Unlock()
	b := c.wbuf[:0]
	for i, r := range reqs {
		b = c.appendSynStream(b, streams[i].id, r.headers, r.fin)
	}
	c.wbuf = b
	_, err = c.conn.Write(b)
	c.wmu.Unlock()
	if err != nil {
		_ = c.conn.Close()
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
		_ = c.conn.Close()
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
	_ = c.conn.Close()
	c.mu.Lock()
	streams := c.streams
	c.streams = nil
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
		if s != nil {
			s.deliver(p)
		}
		_, _ = c.br.Discard(len(p))
		length -= len(p)
	}
	if s != nil && flags&spdyFlagFin != 0 {
		c.remoteFin(s)
	}
	return nil
}

// remoteFin: the server will send nothing more on s.
func (c *spdyConn) remoteFin(s *spdyStream) {
	c.mu.Lock()
	s.gotFin = true
	if s.sentFin {
		delete(c.streams, s.id)
	}
	c.mu.Unlock()
	s.end(nil)
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
		delete(c.streams, word)
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
				delete(c.streams, id)
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
// loop; the client's side is sent with sendFrom.
type spdyStream struct {
	conn *spdyConn
	id   uint32
	out  io.Writer

	received atomic.Int64 // payload bytes received

	replied chan struct{} // closed when the server accepts the stream
	ended   chan struct{} // closed when nothing more will be received: see err
	endOnce sync.Once
	err     error // nil after the server's FIN; set before ended is closed

	outErr error // a write to out failed: later data is dropped; read loop only

	// Guarded by conn.mu. A stream leaves conn.streams when both sides have sent FIN, or
	// when it is reset by either side.
	accepted, sentFin, gotFin bool
}

// Ended is closed when the server will send nothing more on the stream: it sent FIN (Err is
// nil), or reset the stream, or the stream was reset here, or the connection ended, or the
// stream's data could not be written to its destination.
func (s *spdyStream) Ended() <-chan struct{} { return s.ended }

// Err says why the stream ended; valid once Ended is closed.
func (s *spdyStream) Err() error { return s.err }

func (s *spdyStream) end(err error) {
	s.endOnce.Do(func() {
		s.err = err
		close(s.ended)
	})
}

// deliver writes received data to out. Called by the read loop.
func (s *spdyStream) deliver(p []byte) {
	s.received.Add(int64(len(p)))
	if s.outErr != nil {
		return
	}
	if _, err := s.out.Write(p); err != nil {
		s.outErr = err
		s.end(err)
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
		delete(c.streams, s.id)
	}
	c.mu.Unlock()
	var b [spdyHeaderLen]byte
	putDataHeader(b[:], s.id, spdyFlagFin, 0)
	return c.writeFrames(b[:])
}

// reset abandons the stream: RST_STREAM is sent unless it is already closed both ways, and
// whatever still arrives for it is dropped.
func (s *spdyStream) reset() {
	c := s.conn
	c.mu.Lock()
	_, open := c.streams[s.id]
	delete(c.streams, s.id)
	c.mu.Unlock()
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
