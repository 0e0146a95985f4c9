package cmdutil

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// TimeoutContext derives a context that ends after d (no deadline when d <= 0).
func TimeoutContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// AsTimeout gives err the exit code of a timeout (ExitTimeout) when wctx, a --timeout derived
// from ctx, has run out and ctx has not: the wait ended it, not the user or the cluster. Any
// other err is returned as it is.
func AsTimeout(err error, ctx, wctx context.Context) error {
	// client-go's rate limiter refuses a request that could not start before the deadline, while
	// the deadline has not passed yet: that is the wait running out too.
	if err == nil || ctx.Err() != nil {
		return err
	}
	if wctx.Err() == nil && !strings.Contains(err.Error(), "would exceed context deadline") {
		return err
	}
	var ce *Error
	if errors.As(err, &ce) {
		c := *ce
		c.Code = ExitTimeout
		return &c
	}
	return &Error{Code: ExitTimeout, Err: err}
}

// timeoutValue is a --timeout flag: a duration, 0 for no limit. A negative one is refused as the
// flag is parsed, so that every command says the same about it (a usage error, exit code 2).
type timeoutValue time.Duration

func (t *timeoutValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration: use one such as 30s, 5m or 1h, or 0 for no limit")
	}
	if d < 0 {
		return fmt.Errorf("a negative timeout: use a duration such as 30s, 5m or 1h, or 0 for no limit")
	}
	*t = timeoutValue(d)
	return nil
}

func (t *timeoutValue) String() string { return time.Duration(*t).String() }
func (t *timeoutValue) Type() string   { return "duration" }

// TimeoutFlag adds --timeout to cmd, defaulting to def: how long to wait for what, 0 for no
// limit (see TimeoutContext).
func TimeoutFlag(cmd *cobra.Command, p *time.Duration, def time.Duration, what string) {
	*p = def
	cmd.Flags().Var((*timeoutValue)(p), "timeout", what+", 0 for no limit")
}
