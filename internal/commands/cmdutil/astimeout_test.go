package cmdutil

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestAsTimeout(t *testing.T) {
	t.Parallel()
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	expired, cancel := context.WithTimeout(parent, time.Nanosecond)
	defer cancel()
	<-expired.Done()
	running, cancelRunning := context.WithCancel(parent)
	defer cancelRunning()

	plain := errors.New("still recovering")
	if err := AsTimeout(plain, parent, expired); ExitCode(err) != ExitTimeout || !errors.Is(err, plain) {
		t.Errorf("a plain error when the wait ran out: exit %d (%v), want %d", ExitCode(err), err, ExitTimeout)
	}
	hinted := Errorf(ExitError, "database mydb: no answer").WithHint("check it")
	if err := AsTimeout(hinted, parent, expired); ExitCode(err) != ExitTimeout || Hint(err) != "check it" || ExitCode(hinted) != ExitError {
		t.Errorf("a command error when the wait ran out: exit %d, hint %q (the original: exit %d)", ExitCode(err), Hint(err), ExitCode(hinted))
	}
	if err := AsTimeout(plain, parent, running); err != plain {
		t.Errorf("the wait did not run out: %v, want the error itself", err)
	}
	if AsTimeout(nil, parent, expired) != nil {
		t.Error("nil became an error")
	}
	cancelParent() // Ctrl-C: not a timeout
	if err := AsTimeout(plain, parent, expired); err != plain {
		t.Errorf("the parent ended too: %v, want the error itself", err)
	}
}
