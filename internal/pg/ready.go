package pg

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// readyAttemptTimeout bounds one login attempt when the connection string sets no connect_timeout:
// a tunnel whose pod is being replaced can hold a connection open without answering.
const readyAttemptTimeout = 10 * time.Second

// WaitReady logs in with connString (and runs SELECT 1) until that works, retrying with backoff
// (100ms doubling to 2s) until ctx ends. A pod marked Ready, or a tunnel that just opened, is not
// yet proof that PostgreSQL takes logins: this is. The error names the last failure, never the
// password.
func WaitReady(ctx context.Context, connString string) error {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		// pgx's parse errors quote the connection string (redacted on a best-effort basis only).
		return errors.New("wait for PostgreSQL: the connection string is not valid (not shown: it may contain a password)")
	}
	last, attempts, _ := retryLogin(ctx, cfg, nil)
	if last == nil {
		return nil
	}
	return &notReadyError{
		msg:   fmt.Sprintf("PostgreSQL at %s did not accept a login after %d attempts: %s", readyWhere(cfg), attempts, scrub(last.Error(), cfg.Password)),
		cause: ctx.Err(),
	}
}

// retryLogin is the login loop of WaitReady and CheckLogin: it logs in with cfg and runs SELECT 1
// until that works, retrying with backoff (100ms doubling to 2s) until ctx ends or giveUp (when
// given) says that a failure is final. It returns nil, or the last failure, the number of
// attempts, and whether ctx ended the loop (as opposed to giveUp).
func retryLogin(ctx context.Context, cfg *pgx.ConnConfig, giveUp func(error) bool) (last error, attempts int, ctxEnded bool) {
	delay := 100 * time.Millisecond
	for attempts = 1; ; attempts++ {
		last = loginOnce(ctx, cfg)
		if last == nil {
			return nil, attempts, false
		}
		if giveUp != nil && giveUp(last) {
			return last, attempts, false
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return last, attempts, true
		case <-timer.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// loginOnce logs in once with cfg and runs SELECT 1. Without a connect_timeout in cfg, the attempt
// is bounded by readyAttemptTimeout.
func loginOnce(ctx context.Context, cfg *pgx.ConnConfig) error {
	attemptCtx := ctx
	if cfg.ConnectTimeout == 0 {
		var cancel context.CancelFunc
		attemptCtx, cancel = context.WithTimeout(ctx, readyAttemptTimeout)
		defer cancel()
	}
	conn, err := pgx.ConnectConfig(attemptCtx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	return conn.QueryRow(attemptCtx, "SELECT 1").Scan(&one)
}

func readyWhere(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("%s (user %s, database %s)", hostPort(cfg.Host, cfg.Port), cfg.User, cfg.Database)
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") {
		return host
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(int(port))
	}
	return host + ":" + strconv.Itoa(int(port))
}

// scrub removes the password from a message, in case a driver or server ever echoes it.
func scrub(msg, password string) string {
	if password == "" {
		return msg
	}
	for _, form := range []string{password, url.QueryEscape(password), url.PathEscape(password)} {
		if form != "" {
			msg = strings.ReplaceAll(msg, form, "xxxxx")
		}
	}
	return msg
}

// notReadyError keeps ctx's error reachable with errors.Is (context.DeadlineExceeded), while its
// text carries the last login failure.
type notReadyError struct {
	msg   string
	cause error
}

func (e *notReadyError) Error() string { return e.msg + " (" + e.cause.Error() + ")" }
func (e *notReadyError) Unwrap() error { return e.cause }
