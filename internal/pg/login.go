package pg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Login is what CheckLogin connects with. The password is set on the connection config, never
// put in a connection string that could be logged.
type Login struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string
}

func (l Login) config() (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig("sslmode=disable connect_timeout=10")
	if err != nil {
		return nil, err
	}
	cfg.Host = l.Host
	cfg.Port = uint16(l.Port)
	cfg.User = l.User
	cfg.Password = l.Password
	cfg.Database = l.Database
	cfg.Fallbacks = nil
	return cfg, nil
}

// Connect logs in with l (the password on the config, never in a string) and returns the
// connection. Its error names the role and the address, never the password.
func Connect(ctx context.Context, l Login) (*pgx.Conn, error) {
	cfg, err := l.config()
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("log in as %s at %s: %s", l.User, addr(l), scrub(err.Error(), l.Password))
	}
	return conn, nil
}

// ErrAuth is returned when the server rejected the login (wrong password, no such role or
// database), as opposed to not answering.
var ErrAuth = errors.New("login refused")

// AuthGrace is how long CheckLogin keeps retrying a refused login.
const AuthGrace = 15 * time.Second

// CheckLogin logs in and runs SELECT 1, retrying while the server is not yet answering (a tunnel
// that just opened, a server still starting) until ctx ends. A refused login (authentication,
// unknown role or database) is retried for AuthGrace only (the role may be created a moment after
// the server starts answering), then returned wrapped in ErrAuth.
func CheckLogin(ctx context.Context, l Login) error {
	cfg, err := l.config()
	if err != nil {
		return err
	}
	var firstAuth time.Time
	last, _, ctxEnded := retryLogin(ctx, cfg, func(err error) bool {
		if refusal(err) == nil {
			return false
		}
		if firstAuth.IsZero() {
			firstAuth = time.Now()
			return false
		}
		return time.Since(firstAuth) > AuthGrace
	})
	switch {
	case last == nil:
		return nil
	case ctxEnded:
		return fmt.Errorf("login as %s at %s: %w (last error: %v)", l.User, addr(l), ctx.Err(), authError(last))
	default:
		return fmt.Errorf("login as %s at %s: %w", l.User, addr(l), authError(last))
	}
}

func addr(l Login) string { return l.Host + ":" + strconv.Itoa(l.Port) }

// refusal is the server's refusal of a login (wrong password, no such role or database), as
// opposed to not answering; nil when err is not one.
func refusal(err error) *pgconn.PgError {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return nil
	}
	switch pgErr.Code {
	case "28P01", "28000", "3D000": // invalid_password, invalid_authorization_specification, invalid_catalog_name
		return pgErr
	}
	return nil
}

// authError wraps a refused login in ErrAuth; other errors are returned as they are.
func authError(err error) error {
	if r := refusal(err); r != nil {
		return fmt.Errorf("%w: %s (SQLSTATE %s)", ErrAuth, r.Message, r.Code)
	}
	return err
}
