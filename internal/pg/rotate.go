package pg

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// EnsureLoginRoles makes owner and alt two login roles that act as one application role: alt is a
// member of owner and starts every session as owner (ALTER ROLE alt SET role = owner), so that
// objects created through either login are owned by owner and either can use everything. Rotation
// switches the application between them. Idempotent; a missing owner is an error (it owns the
// database and is created by db create).
func EnsureLoginRoles(ctx context.Context, conn *pgx.Conn, owner, alt string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", owner).Scan(&exists); err != nil {
		return fmt.Errorf("look up role %s: %w", owner, err)
	}
	if !exists {
		return fmt.Errorf("role %s does not exist in the database server", owner)
	}
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", alt).Scan(&exists); err != nil {
		return fmt.Errorf("look up role %s: %w", alt, err)
	}
	// No password: a role without one cannot log in until rotation gives it one.
	stmts := []string{}
	if !exists {
		stmts = append(stmts, "CREATE ROLE "+ident(alt)+" LOGIN")
	}
	member := false
	if exists {
		if err := conn.QueryRow(ctx, "SELECT pg_has_role($1, $2, 'MEMBER')", alt, owner).Scan(&member); err != nil {
			return fmt.Errorf("check membership of %s in %s: %w", alt, owner, err)
		}
	}
	if !exists || !member {
		stmts = append(stmts, "GRANT "+ident(owner)+" TO "+ident(alt))
	}
	stmts = append(stmts,
		"ALTER ROLE "+ident(owner)+" LOGIN",
		"ALTER ROLE "+ident(alt)+" LOGIN",
		"ALTER ROLE "+ident(alt)+" SET role = "+literal(owner))
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("set up role %s: %w", alt, err)
		}
	}
	return nil
}

// SetPasswordVerifier gives role a password by its SCRAM-SHA-256 verifier: the server, its log
// (log_statement = 'all') and pg_stat_statements only ever see the verifier.
func SetPasswordVerifier(ctx context.Context, conn *pgx.Conn, role, verifier string) error {
	if !strings.HasPrefix(verifier, "SCRAM-SHA-256$") {
		return errors.New("refusing to send a password that is not a SCRAM-SHA-256 verifier")
	}
	if _, err := conn.Exec(ctx, "ALTER ROLE "+ident(role)+" PASSWORD "+literal(verifier)); err != nil {
		return fmt.Errorf("set the password of role %s: %w", role, err)
	}
	return nil
}

// DisablePassword removes role's password: it can no longer log in with one. The role stays (it
// may own objects) and sessions already open are left alone.
func DisablePassword(ctx context.Context, conn *pgx.Conn, role string) error {
	if _, err := conn.Exec(ctx, "ALTER ROLE "+ident(role)+" PASSWORD NULL"); err != nil {
		return fmt.Errorf("disable the password of role %s: %w", role, err)
	}
	return nil
}

// RolePassword returns the stored verifier of a role ("" without a password).
func RolePassword(ctx context.Context, conn *pgx.Conn, role string) (string, error) {
	var v *string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&v); err != nil {
		return "", fmt.Errorf("read the password of role %s: %w", role, err)
	}
	if v == nil {
		return "", nil
	}
	return *v, nil
}

// TryLogin logs in once and runs SELECT 1; a refused login is wrapped in ErrAuth.
func TryLogin(ctx context.Context, l Login) error {
	cfg, err := l.config()
	if err != nil {
		return err
	}
	if err := authError(loginOnce(ctx, cfg)); err != nil {
		if errors.Is(err, ErrAuth) {
			return fmt.Errorf("login as %s at %s: %w", l.User, addr(l), err)
		}
		return fmt.Errorf("login as %s at %s: %s", l.User, addr(l), scrub(err.Error(), l.Password))
	}
	return nil
}
