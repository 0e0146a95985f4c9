package testbed

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// A killed run is the stackblaze command line run in a process of its own, the test binary
// itself, that kills itself with SIGKILL right after a named step of a command, exactly as a
// `kill -9` at that moment would: tests of commands that must survive that (rotate-credentials,
// upgrade) prove that a second run repairs what it left. A package that has such a test has a
// helper test (named by RunKilledAfter's helper) whose body is KilledAfterStepMain.

// KilledAfterStepMain is the body of a helper test: when the variable hookEnv names a step, it
// runs main (the command line, as cmd/stackblaze runs it) with the arguments after "--", with
// setHook given a function that kills the process after that step. Without the variable the
// helper is skipped (it is not a test of its own).
func KilledAfterStepMain(t *testing.T, hookEnv string, setHook func(func(step string)), main func(ctx context.Context, args []string) int) {
	step := os.Getenv(hookEnv)
	if step == "" {
		t.Skip("the command line of a killed run (testbed.RunKilledAfter)")
	}
	setHook(func(s string) {
		if s == step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal arrives
		}
	})
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := main(ctx, args)
	stop()
	os.Exit(code)
}

// RunKilledAfter runs the command line args as the binary would be run against the test bed (the
// same flags, environment and directory), as this test binary's helper test, which kills itself
// after step (hookEnv carries it). A run killed by the hook has Code -1.
func (e *Env) RunKilledAfter(t *testing.T, ns, helper, hookEnv, step string, args ...string) Result {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	like := e.Command(t, ns, args...)
	ctx := Context(t, 10*time.Minute)
	cmd := exec.CommandContext(ctx, self, append([]string{"-test.run=^" + helper + "$", "--"}, like.Args[1:]...)...)
	cmd.Env = append(like.Env, hookEnv+"="+step)
	cmd.Dir = like.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return res
}
