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

// Connect opens a connection with l (the password on the config, never in a string).
func Connect(ctx context.Context, l Login) (*pgx.Conn, error) {
	cfg, err := l.config()
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
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
	delay := 100 * time.Millisecond
	var last error
	var firstAuth time.Time
	for {
		last = tryLogin(ctx, cfg)
		if last == nil {
			return nil
		}
		if errors.Is(last, ErrAuth) {
			if firstAuth.IsZero() {
				firstAuth = time.Now()
			} else if time.Since(firstAuth) > AuthGrace {
				return fmt.Errorf("login as %s at %s: %w", l.User, addr(l), last)
			}
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("login as %s at %s: %w (last error: %v)", l.User, addr(l), ctx.Err(), last)
		case <-t.C:
		}
		if delay < 2*time.Second {
			delay *= 2
		}
	}
}

func addr(l Login) string { return l.Host + ":" + strconv.Itoa(l.Port) }

func tryLogin(ctx context.Context, cfg *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			switch pgErr.Code {
			case "28P01", "28000", "3D000": // invalid_password, invalid_authorization_specification, invalid_catalog_name
				return fmt.Errorf("%w: %s (SQLSTATE %s)", ErrAuth, pgErr.Message, pgErr.Code)
			}
		}
		return err
	}
	defer conn.Close(context.Background())
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}
