package tunnel

import (
	"errors"
	"io"
	"net"
	"strings"
	"time"
)

// errorStreamWait bounds the wait for the server's verdict on a finished connection.
const errorStreamWait = 5 * time.Second

// serve carries one client connection to the pod, over a session of its own.
func (t *Tunnel) serve(conn net.Conn) {
	// Two tries: an idle upgraded connection may have died unnoticed, or the pod may have gone
	// between choosing it and using it. Nothing has been sent yet, so a retry is safe.
	for attempt := 0; attempt < 2; attempt++ {
		pod, err := t.pods.wait(t.ctx)
		if err != nil {
			if t.ctx.Err() == nil {
				t.cfg.Logf("connection from %s: no pod to forward to (%s): %v", conn.RemoteAddr(), t.pods.describe(), err)
			}
			return
		}
		p := t.poolFor(pod)
		s, reused, err := p.acquire(t.ctx)
		if err != nil {
			if errors.Is(err, errPodGone) && attempt == 0 {
				continue
			}
			if t.ctx.Err() == nil {
				t.cfg.Logf("connection from %s to pod %s: %v", conn.RemoteAddr(), pod.name, err)
			}
			return
		}
		var errMsg errorMessage
		errStream, dataStream, err := p.streams(s, conn, &errMsg)
		if err != nil {
			p.release(s, false)
			if reused && attempt == 0 && t.ctx.Err() == nil {
				continue
			}
			if t.ctx.Err() == nil {
				t.cfg.Logf("connection from %s to pod %s: %v", conn.RemoteAddr(), pod.name, err)
			}
			return
		}
		p.release(s, t.pipe(conn, s, pod, errStream, dataStream, &errMsg))
		return
	}
}

// pipe carries one client connection until the pod's side ends, the client goes away, or the
// tunnel closes. The pod's side needs no goroutine here: the session's read loop writes it to
// conn (or, when conn is behind, a writer of the stream's own: see spdy.go). It reports
// whether everything ended cleanly, so that the session may be reused.
func (t *Tunnel) pipe(conn net.Conn, s *session, pod podRef, errStream, dataStream *spdyStream, errMsg *errorMessage) bool {
	localDone := make(chan error, 1)
	go func() {
		b := t.getBuf()
		defer t.putBuf(b)
		// At the client's EOF, its half-close is passed on (FIN), and the answer still read.
		localDone <- dataStream.sendFrom(conn, *b)
	}()

	clean := true
	localFinished := false
	select {
	case <-s.gone:
		// The pod was deleted or replaced: end this client's connection now, cleanly, rather
		// than leave it waiting on a server that no longer exists.
		clean = false
		t.cfg.Logf("connection from %s: %v", conn.RemoteAddr(), errPodGone)
	case <-dataStream.Ended():
		clean = t.remoteEnded(conn, pod, dataStream.Err())
	case err := <-localDone:
		localFinished = true
		switch {
		case err != nil:
			// A reset or killed client. Its session is retired; nobody else is affected.
			clean = false
			if !isClosedConn(err) && t.ctx.Err() == nil {
				t.cfg.Logf("connection from %s: %v", conn.RemoteAddr(), err)
			}
		case !t.awaitAfterHalfClose(dataStream):
			// The client is gone, and the pod's side neither answers nor closes: some
			// forwarders never pass the half-close on to the pod. Do not hold on forever.
			clean = false
		default:
			clean = t.remoteEnded(conn, pod, dataStream.Err())
		}
	}

	// Closing the client connection ends the copy from it, and a write to it under way; the
	// reset tells the server to drop the stream, unless both sides have already closed it.
	_ = conn.Close()
	dataStream.reset()
	dataStream.waitWritten()

	select {
	case <-errStream.Ended():
		if msg := strings.TrimSpace(errMsg.String()); msg != "" {
			clean = false
			t.cfg.Logf("connection from %s: pod %s: %s", conn.RemoteAddr(), pod.name, msg)
		} else if err := errStream.Err(); err != nil {
			clean = false
			if t.ctx.Err() == nil && !isClosedConn(err) {
				t.cfg.Logf("connection from %s: error stream of pod %s: %v", conn.RemoteAddr(), pod.name, err)
			}
		}
	case <-time.After(errorStreamWait):
		clean = false
	case <-t.ctx.Done():
		clean = false
	}
	if !clean {
		errStream.reset()
	}
	if !localFinished {
		<-localDone
	}
	return clean
}

// remoteEnded reports whether the pod's side of a connection ended cleanly (FIN), and logs
// why not, unless the tunnel or the connection was closed here. A stream reset by the server
// is not logged: the error stream says why.
func (t *Tunnel) remoteEnded(conn net.Conn, pod podRef, err error) bool {
	if err == nil {
		return true
	}
	if errors.Is(err, errClientNotReading) {
		t.notReading.Add(1)
		t.cfg.Logf("connection from %s to pod %s closed: %v", conn.RemoteAddr(), pod.name, err)
		return false
	}
	var reset streamResetError
	if !errors.As(err, &reset) && !isClosedConn(err) && t.ctx.Err() == nil {
		t.cfg.Logf("connection from %s: from pod %s: %v", conn.RemoteAddr(), pod.name, err)
	}
	return false
}

// halfCloseIdle is how long the pod's side may stay silent after the client has closed its
// side before the connection is given up.
const halfCloseIdle = 30 * time.Second

// awaitAfterHalfClose waits for the pod's side to finish after the client closed its side,
// for as long as data keeps coming. It is false when it went silent for halfCloseIdle, or the
// tunnel closed.
func (t *Tunnel) awaitAfterHalfClose(data *spdyStream) bool {
	tick := time.NewTicker(halfCloseIdle)
	defer tick.Stop()
	last := data.received.Load()
	for {
		select {
		case <-data.Ended():
			return true
		case <-tick.C:
			n := data.received.Load()
			if n == last {
				return false
			}
			last = n
		case <-t.ctx.Done():
			return false
		}
	}
}

func isClosedConn(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) ||
		strings.Contains(err.Error(), "use of closed network connection")
}
