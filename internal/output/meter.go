package output

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// ByteMeter redraws one line on a terminal's stderr with the bytes that went through so far and
// the rate (db dump, db import); off a terminal, in CI or with TERM=dumb it is silent, and the
// command's ✔ line says the total.
type ByteMeter struct {
	// On tells whether the line is drawn.
	On bool

	ios   *IOStreams
	what  string
	start time.Time

	mu   sync.Mutex
	n    int64
	done chan struct{}
	wg   sync.WaitGroup
}

// NewByteMeter starts a meter whose line begins with what.
func (s *IOStreams) NewByteMeter(what string) *ByteMeter {
	m := &ByteMeter{ios: s, what: what, start: time.Now(), done: make(chan struct{}),
		On: s.ErrTTY && !s.CI() && s.getenv("TERM") != "dumb"}
	if m.On {
		m.wg.Add(1)
		go m.loop()
	}
	return m
}

func (m *ByteMeter) loop() {
	defer m.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			fmt.Fprint(m.ios.ErrOut, "\r\033[K")
			return
		case <-t.C:
			m.mu.Lock()
			n := m.n
			m.mu.Unlock()
			fmt.Fprintf(m.ios.ErrOut, "\r\033[K%s: %s%s", m.what, HumanBytes(n), Rate(n, time.Since(m.start).Seconds()))
		}
	}
}

// Stop clears the line; it may be called more than once.
func (m *ByteMeter) Stop() {
	select {
	case <-m.done:
	default:
		close(m.done)
	}
	m.wg.Wait()
}

func (m *ByteMeter) add(n int) {
	m.mu.Lock()
	m.n += int64(n)
	m.mu.Unlock()
}

// Writer counts what is written to w.
func (m *ByteMeter) Writer(w io.Writer) io.Writer { return meterWriter{m, w} }

// Reader counts what is read from r.
func (m *ByteMeter) Reader(r io.Reader) io.Reader { return meterReader{m, r} }

type meterWriter struct {
	m *ByteMeter
	w io.Writer
}

func (mw meterWriter) Write(p []byte) (int, error) {
	n, err := mw.w.Write(p)
	mw.m.add(n)
	return n, err
}

type meterReader struct {
	m *ByteMeter
	r io.Reader
}

func (mr meterReader) Read(p []byte) (int, error) {
	n, err := mr.r.Read(p)
	mr.m.add(n)
	return n, err
}

// Rate is " (1.2 MiB/s)" for n bytes in secs seconds, or "" for too short a time to say.
func Rate(n int64, secs float64) string {
	if secs < 0.05 {
		return ""
	}
	return fmt.Sprintf(" (%s/s)", HumanBytes(int64(float64(n)/secs)))
}
