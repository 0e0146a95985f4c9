package output

import (
	"fmt"
	"sync"
	"time"

	"github.com/briandowns/spinner"
)

// Progress reports steps on stderr. When decorated it shows a spinner while a step runs and a
// "✔ ..." line when it is done; otherwise every line is plain and starts with a timestamp, so that
// CI logs read well.
type Progress struct {
	io    *IOStreams
	now   func() time.Time
	theme Theme

	mu      sync.Mutex
	spinner *spinner.Spinner
	quiet   bool
}

// NewProgress returns a progress reporter. now is the clock used for timestamps.
func (s *IOStreams) NewProgress(now func() time.Time) *Progress {
	if now == nil {
		now = time.Now
	}
	return &Progress{io: s, now: now, theme: s.Theme()}
}

// Start shows that a step began (a spinner on a terminal, a "..." line otherwise).
func (p *Progress) Start(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked()
	if p.io.Decorated() && p.io.ErrFile != nil {
		sp := spinner.New(spinner.CharSets[14], 100*time.Millisecond, spinner.WithWriterFile(p.io.ErrFile))
		sp.Suffix = " " + msg
		sp.Start()
		p.spinner = sp
		return
	}
	if !p.io.Decorated() {
		p.plain("%s ...", msg)
	}
}

// Done reports a finished step: "✔ msg".
func (p *Progress) Done(format string, args ...any) {
	p.line("✔", p.theme.Success.Render, format, args...)
}

// Info prints a line that is neither a step nor a warning.
func (p *Progress) Info(format string, args ...any) {
	p.line(" ", nil, format, args...)
}

// Warn prints "! msg".
func (p *Progress) Warn(format string, args ...any) {
	p.line("!", p.theme.Warning.Render, format, args...)
}

// line ends a running spinner and prints msg after a mark, styled by style on a terminal.
func (p *Progress) line(mark string, style func(...string) string, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked()
	if !p.io.Decorated() {
		p.plain("%s %s", mark, msg)
		return
	}
	if style != nil {
		mark = style(mark)
	}
	fmt.Fprintf(p.io.ErrOut, "%s %s\n", mark, msg)
}

// Stop removes a running spinner without printing anything.
func (p *Progress) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked()
}

func (p *Progress) stopLocked() {
	if p.spinner != nil {
		p.spinner.Stop()
		p.spinner = nil
	}
}

func (p *Progress) plain(format string, args ...any) {
	fmt.Fprintf(p.io.ErrOut, "%s "+format+"\n", append([]any{p.now().UTC().Format(time.RFC3339)}, args...)...)
}
