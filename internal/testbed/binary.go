package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the stackblaze binary from this checkout once per test process and returns its
// path, so that end-to-end tests run exactly the code under test as a real process.
func (e *Env) Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stackblaze-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "stackblaze")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/stackblaze")
		cmd.Dir = e.Root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build stackblaze: %v", buildErr)
	}
	return binPath
}

// Result is one run of the binary.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs the binary against the test bed in namespace ns (CI set: no prompts, plain lines).
func (e *Env) Run(t testing.TB, ns string, args ...string) Result {
	t.Helper()
	return RunCommand(t, e.Command(t, ns, args...))
}

// RunCommand runs cmd (the binary, as Command builds it, perhaps changed) and returns its output
// and exit code; a binary that cannot be run fails the test.
func RunCommand(t testing.TB, cmd *exec.Cmd) Result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.Code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return res
}

// Exec runs argv in the pod's (first) container with kubectl exec, as a user would, and returns
// its standard output; an error carries the standard error.
func (e *Env) Exec(t testing.TB, ns, pod string, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"--kubeconfig", e.Kubeconfig, "-n", ns, "exec", pod, "--"}, argv...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, e.Kubectl(), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl exec %s %v: %v: %s", pod, argv, err, stderr.String())
	}
	return stdout.String(), nil
}

// MustExec is Exec that fails the test on an error.
func (e *Env) MustExec(t testing.TB, ns, pod string, argv ...string) string {
	t.Helper()
	out, err := e.Exec(t, ns, pod, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Command prepares the binary with --kubeconfig and -n set, CI=true, and a context that ends
// with the test (at most 10 minutes).
func (e *Env) Command(t testing.TB, ns string, args ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	full := append([]string{"--kubeconfig", e.Kubeconfig, "-n", ns}, args...)
	cmd := exec.CommandContext(ctx, e.Binary(t), full...)
	cmd.Env = append(os.Environ(), "CI=true", "NO_COLOR=1", "STACKBLAZE_DATABASE=", "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	cmd.Dir = t.TempDir()
	return cmd
}

// SQL runs query in database db as the application (`db run` and psql: unaligned, tuples only)
// and returns its output without the surrounding space; a failure fails the test.
func (e *Env) SQL(t testing.TB, ns, db, query string) string {
	t.Helper()
	r := e.Run(t, ns, "db", "run", db, "--", "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", query)
	if r.Code != 0 {
		t.Fatalf("psql %q: exit %d\n%s", query, r.Code, r.Stderr)
	}
	return strings.TrimSpace(r.Stdout)
}
