package tunnel

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
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
		errStream, dataStream, err := p.streams(s)
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
		p.release(s, t.pipe(conn, s, pod, errStream, dataStream))
		return
	}
}

// pipe copies both ways until the pod's side ends, the client goes away, or the tunnel
// closes. It reports whether everything ended cleanly, so that the session may be reused.
func (t *Tunnel) pipe(conn net.Conn, s *session, pod podRef, errStream, dataStream httpstream.Stream) bool {
	defer s.conn.RemoveStreams(errStream, dataStream)

	type verdict struct {
		msg []byte
		err error
	}
	errCh := make(chan verdict, 1)
	go func() {
		msg, err := io.ReadAll(errStream)
		errCh <- verdict{msg, err}
	}()

	remoteDone := make(chan error, 1)
	localDone := make(chan error, 1)
	remote := &countingReader{r: dataStream}
	go func() {
		_, err := t.copyBuf(conn, remote)
		remoteDone <- err
	}()
	go func() {
		_, err := t.copyBuf(dataStream, conn)
		if err == nil {
			// The client finished sending: pass the half-close on, keep reading the answer.
			err = dataStream.Close()
		}
		localDone <- err
	}()

	clean := true
	remoteFinished, localFinished := false, false
	select {
	case <-s.gone:
		// The pod was deleted or replaced: end this client's connection now, cleanly, rather
		// than leave it waiting on a server that no longer exists.
		clean = false
		t.cfg.Logf("connection from %s: %v", conn.RemoteAddr(), errPodGone)
	case err := <-remoteDone:
		remoteFinished = true
		if err != nil {
			clean = false
			if !isClosedConn(err) && t.ctx.Err() == nil {
				t.cfg.Logf("connection from %s: from pod %s: %v", conn.RemoteAddr(), pod.name, err)
			}
		}
	case err := <-localDone:
		localFinished = true
		if err != nil {
			// A reset or killed client. Its session is retired; nobody else is affected.
			clean = false
			if !isClosedConn(err) && t.ctx.Err() == nil {
				t.cfg.Logf("connection from %s: %v", conn.RemoteAddr(), err)
			}
		} else if err, ok := t.awaitAfterHalfClose(remote, remoteDone); !ok {
			// The client is gone, and the pod's side neither answers nor closes: some
			// forwarders never pass the half-close on to the pod. Do not hold on forever.
			clean = false
		} else {
			remoteFinished = true
			if err != nil {
				clean = false
				if !isClosedConn(err) && t.ctx.Err() == nil {
					t.cfg.Logf("connection from %s: from pod %s: %v", conn.RemoteAddr(), pod.name, err)
				}
			}
		}
	}

	// Closing the client connection and resetting the stream unblocks both copies; the reset
	// also discards unsent data so that it cannot hold up the server's error stream.
	_ = conn.Close()
	_ = dataStream.Reset()

	select {
	case v := <-errCh:
		switch {
		case v.err != nil:
			clean = false
			if t.ctx.Err() == nil && !isClosedConn(v.err) {
				t.cfg.Logf("connection from %s: error stream of pod %s: %v", conn.RemoteAddr(), pod.name, v.err)
			}
		case len(v.msg) > 0:
			clean = false
			t.cfg.Logf("connection from %s: pod %s: %s", conn.RemoteAddr(), pod.name, strings.TrimSpace(string(v.msg)))
		}
	case <-time.After(errorStreamWait):
		clean = false
	case <-t.ctx.Done():
		clean = false
	}
	if !clean {
		_ = errStream.Reset()
	}
	if !remoteFinished {
		<-remoteDone
	}
	if !localFinished {
		<-localDone
	}
	return clean
}

// halfCloseIdle is how long the pod's side may stay silent after the client has closed its
// side before the connection is given up.
const halfCloseIdle = 30 * time.Second

// awaitAfterHalfClose waits for the pod's side to finish after the client closed its side,
// for as long as data keeps coming. ok is false when it went silent for halfCloseIdle, or the
// tunnel closed.
func (t *Tunnel) awaitAfterHalfClose(remote *countingReader, remoteDone <-chan error) (err error, ok bool) {
	tick := time.NewTicker(halfCloseIdle)
	defer tick.Stop()
	last := remote.n.Load()
	for {
		select {
		case err := <-remoteDone:
			return err, true
		case <-tick.C:
			n := remote.n.Load()
			if n == last {
				return nil, false
			}
			last = n
		case <-t.ctx.Done():
			return nil, false
		}
	}
}

// countingReader counts what it reads, so that a silent stream can be told from a busy one.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func isClosedConn(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) ||
		strings.Contains(err.Error(), "use of closed network connection")
}
