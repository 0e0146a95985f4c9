// Package cmdtest helps the commands' tests: a Factory on buffers with a pinned clock and a fake
// (or real) Kubernetes client, and golden files rewritten with -update.
package cmdtest

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/pg"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// Clock is the pinned time of every test.
var Clock = time.Date(2026, 11, 24, 10, 15, 0, 0, time.UTC)

// Env is a Factory on buffers.
type Env struct {
	F      *cmdutil.Factory
	In     *bytes.Buffer
	Out    *bytes.Buffer
	ErrOut *bytes.Buffer
	Vars   map[string]string
}

// New returns a Factory whose streams are buffers, terminals when tty is set, with an empty
// environment (plus vars), a pinned clock, and Kube returning cs in namespace ns. A nil cs makes
// Kube fail the test: commands that must not touch the cluster prove it this way.
func New(t testing.TB, tty bool, cs kubernetes.Interface, ns string) *Env {
	t.Helper()
	e := &Env{In: &bytes.Buffer{}, Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}, Vars: map[string]string{}}
	ios := output.Test(e.In, e.Out, e.ErrOut)
	ios.InTTY, ios.OutTTY, ios.ErrTTY = tty, tty, tty
	ios.Getenv = func(k string) string { return e.Vars[k] }
	dir := t.TempDir()
	e.F = &cmdutil.Factory{
		IO:  ios,
		Now: func() time.Time { return Clock },
		Kube: func() (*kube.Client, error) {
			if cs == nil {
				t.Errorf("the command built a Kubernetes client")
				return nil, errors.New("no cluster in this test")
			}
			return &kube.Client{Clientset: cs, Namespace: ns, Context: "test", Server: "https://test:6443"}, nil
		},
		OpenTunnel: func(context.Context, *kube.Client, string, string, int) (cmdutil.Tunnel, error) {
			return FakeTunnel{}, nil
		},
		CheckLogin:    func(context.Context, pg.Login) error { return nil },
		InitBackups:   func(context.Context, *kube.Client, string) error { return nil },
		ConfigSources: cmdutil.ConfigSources{UserFile: filepath.Join(dir, "none.yaml"), Dir: dir},
		Version:       cmdutil.BuildInfo{Version: "v0.0.0-test", GoVersion: "go1.26", Platform: "linux/amd64"},
	}
	return e
}

// FakeTunnel is a tunnel that goes nowhere.
type FakeTunnel struct{}

func (FakeTunnel) Addr() string { return "127.0.0.1:54321" }
func (FakeTunnel) Port() int    { return 54321 }
func (FakeTunnel) Close() error { return nil }

// Golden compares got with testdata/NAME.golden, or rewrites it with -update.
func Golden(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run the test with -update to write it): %v", err)
	}
	if string(want) != got {
		t.Errorf("output differs from %s (run with -update to accept):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// Lines splits output into lines, for assertions.
func Lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }

// WaitProbe stands in for pg.WaitReady in a command's options, to see how long a command lets
// it wait: it records its context's deadline, then fails ("stop here"), or with Hang waits for
// the context to end and returns its error.
type WaitProbe struct {
	Hang bool

	Called      bool
	HadDeadline bool
}

// WaitReady is the stand-in.
func (p *WaitProbe) WaitReady(ctx context.Context, _ string) error {
	p.Called = true
	_, p.HadDeadline = ctx.Deadline()
	if p.Hang {
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			return errors.New("the wait was never cut short")
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("stop here")
}

// Check fails t unless the probe was called with a deadline exactly when wantDeadline.
func (p *WaitProbe) Check(t testing.TB, what string, wantDeadline bool, err error) {
	t.Helper()
	if !p.Called {
		t.Fatalf("%s: WaitReady not called: %v", what, err)
	}
	if p.HadDeadline != wantDeadline {
		t.Errorf("%s: deadline %v, want %v", what, p.HadDeadline, wantDeadline)
	}
}
