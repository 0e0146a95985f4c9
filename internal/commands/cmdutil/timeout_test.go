package cmdutil

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestTimeoutFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		arg     string
		want    time.Duration
		wantErr string
	}{
		{"", 5 * time.Minute, ""}, // the default
		{"0", 0, ""},
		{"90s", 90 * time.Second, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"-1s", 0, "a negative timeout"},
		{"5", 0, "not a duration"},
		{"soon", 0, "not a duration"},
	} {
		var got time.Duration
		cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
		TimeoutFlag(cmd, &got, 5*time.Minute, "how long to wait")
		var args []string
		if tc.arg != "" {
			args = []string{"--timeout", tc.arg}
		}
		err := cmd.ParseFlags(args)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("--timeout %s: error %v, want %q", tc.arg, err, tc.wantErr)
			}
		case err != nil || got != tc.want:
			t.Errorf("--timeout %s: %v, %v; want %v", tc.arg, got, err, tc.want)
		}
	}
	cmd := &cobra.Command{Use: "x"}
	var d time.Duration
	TimeoutFlag(cmd, &d, time.Minute, "how long to wait")
	if f := cmd.Flags().Lookup("timeout"); f.Usage != "how long to wait, 0 for no limit" || f.DefValue != "1m0s" || f.Value.Type() != "duration" {
		t.Errorf("flag usage %q, default %q, type %q", f.Usage, f.DefValue, f.Value.Type())
	}
}

// client-go's rate limiter refuses a request it could not start before the deadline while the
// deadline has not passed yet: a timeout too.
func TestAsTimeoutRateLimiter(t *testing.T) {
	ctx := context.Background()
	wctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	err := errors.New("delete pod back-0: client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context deadline")
	if got := ExitCode(AsTimeout(err, ctx, wctx)); got != ExitTimeout {
		t.Errorf("exit %d, want %d", got, ExitTimeout)
	}
	if got := ExitCode(AsTimeout(errors.New("forbidden"), ctx, wctx)); got == ExitTimeout {
		t.Errorf("another error within the deadline is a timeout")
	}
	if AsTimeout(nil, ctx, wctx) != nil {
		t.Errorf("nil is not nil")
	}
}
