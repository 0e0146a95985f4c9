package cmdutil_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/output"
)

// deadTunnel is a tunnel to a server that never accepts a login.
type deadTunnel struct {
	port   int
	closed *bool
}

func (d deadTunnel) Addr() string { return "127.0.0.1:" + fmt.Sprint(d.port) }
func (d deadTunnel) Port() int    { return d.port }
func (d deadTunnel) Close() error { *d.closed = true; return nil }

func TestOpenReadyTunnelFails(t *testing.T) {
	t.Parallel()
	// A server that hangs up on every connection: no login ever succeeds.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	clock := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	const ts = "2026-01-02T03:04:05Z "

	for _, tc := range []struct {
		name     string
		steps    bool
		timeout  time.Duration // of the helper; otherwise of ctx
		wantCode int
		wantErr  string
		hint     string
	}{
		{"steps, own timeout", true, 500 * time.Millisecond, cmdutil.ExitTimeout,
			ts + "Opening a tunnel to app-0 ...\n" + ts + "✔ Tunnel open on 127.0.0.1:" + fmt.Sprint(port) + "\n" +
				ts + "Waiting for the database to accept connections ...\n" + ts + "✔ Tunnel closed\n",
			"check it with `stackblaze db status app`"},
		{"quiet, caller's timeout", false, 0, cmdutil.ExitError, ts + "Opening a tunnel to app-0 ...\n",
			"check it with `stackblaze db status app`; more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var errOut bytes.Buffer
			prog := output.Test(nil, &bytes.Buffer{}, &errOut).NewProgress(clock)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			if tc.timeout > 0 {
				ctx = context.Background()
			}
			closed := false
			r := cmdutil.ReadyTunnel{Progress: prog, Scope: cmdutil.Scope{Database: "app"}, Target: "app-0",
				Login: database.Credentials{Username: "app", Password: "pw", Database: "app"}, Timeout: tc.timeout, Steps: tc.steps,
				Open: func() (cmdutil.Tunnel, error) { return deadTunnel{port: port, closed: &closed}, nil }}
			if !tc.steps {
				r.Hint = "; more"
			}
			_, err := cmdutil.OpenReadyTunnel(ctx, r)
			if code := cmdutil.ExitCode(err); code != tc.wantCode {
				t.Fatalf("exit %d (%v), want %d", code, err, tc.wantCode)
			}
			var e *cmdutil.Error
			if !errors.As(err, &e) || e.Hint != tc.hint || !strings.HasPrefix(e.Error(), "database app: PostgreSQL at 127.0.0.1:") {
				t.Errorf("error %q, hint %q", err, e.Hint)
			}
			if !closed {
				t.Error("the tunnel was left open")
			}
			if errOut.String() != tc.wantErr {
				t.Errorf("stderr\n%s\nwant\n%s", errOut.String(), tc.wantErr)
			}
		})
	}
}
