package output

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// IOStreams are the three standard streams plus what the process knows about them. Tests build one
// with Test and set the terminal flags and the environment they want.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	InTTY  bool
	OutTTY bool
	ErrTTY bool

	// Getenv reads the environment. Tests replace it so that they do not depend on the process's
	// environment (and can run in parallel).
	Getenv func(string) string

	// ErrFile is the *os.File behind ErrOut when there is one; the spinner needs it.
	ErrFile *os.File

	// set by the root command once the configuration is known
	format  string
	noColor bool
}

// System returns the process's streams.
func System() *IOStreams {
	return &IOStreams{
		In:      os.Stdin,
		Out:     os.Stdout,
		ErrOut:  os.Stderr,
		InTTY:   isTerminal(os.Stdin),
		OutTTY:  isTerminal(os.Stdout),
		ErrTTY:  isTerminal(os.Stderr),
		Getenv:  os.Getenv,
		ErrFile: os.Stderr,
		format:  FormatText,
	}
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// Test returns streams on buffers, not terminals, with an empty environment.
func Test(in io.Reader, out, errOut io.Writer) *IOStreams {
	if in == nil {
		in = strings.NewReader("")
	}
	return &IOStreams{In: in, Out: out, ErrOut: errOut, Getenv: func(string) string { return "" }, format: FormatText}
}

// Output formats.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Configure records the output format and the --no-color flag.
func (s *IOStreams) Configure(format string, noColor bool) {
	s.format = format
	s.noColor = noColor
}

// Format is "text" or "json".
func (s *IOStreams) Format() string {
	if s.format == "" {
		return FormatText
	}
	return s.format
}

// IsJSON tells whether the user asked for -o json.
func (s *IOStreams) IsJSON() bool { return s.Format() == FormatJSON }

// CI tells whether the CI environment variable is set (to anything but "false" or "0").
func (s *IOStreams) CI() bool {
	v := s.getenv("CI")
	return v != "" && v != "false" && v != "0"
}

func (s *IOStreams) getenv(k string) string {
	if s.Getenv == nil {
		return ""
	}
	return s.Getenv(k)
}

// Decorated tells whether spinners and other terminal-only effects may be used: text format, both
// stdout and stderr on a terminal, not in CI, and not TERM=dumb.
func (s *IOStreams) Decorated() bool {
	return s.Format() == FormatText && s.OutTTY && s.ErrTTY && !s.CI() && s.getenv("TERM") != "dumb"
}

// ColorEnabled tells whether to use colour. CLICOLOR_FORCE (not "0") forces it; --no-color,
// NO_COLOR, TERM=dumb and CI turn it off; otherwise only when Decorated.
func (s *IOStreams) ColorEnabled() bool {
	if s.noColor || s.getenv("NO_COLOR") != "" || s.Format() != FormatText {
		return false
	}
	if f := s.getenv("CLICOLOR_FORCE"); f != "" && f != "0" {
		return true
	}
	return s.Decorated()
}

// CanPrompt tells whether the tool may ask the user a question.
func (s *IOStreams) CanPrompt() bool {
	return s.InTTY && s.ErrTTY && !s.CI()
}

// ErrNoAnswer is returned by Confirm when the input ends before an answer.
var ErrNoAnswer = errors.New("no answer")

// Confirm asks a yes/no question on stderr and reads the answer from stdin; the default is no.
func (s *IOStreams) Confirm(question string) (bool, error) {
	fmt.Fprintf(s.ErrOut, "%s [y/N] ", question)
	line, err := bufio.NewReader(s.In).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(s.ErrOut)
		return false, ErrNoAnswer
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}
