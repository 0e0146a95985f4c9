package pg

import (
	"errors"
	"strings"
)

// Adoption is what a database restored from another one's backup needs so that it is a database
// of its own: the source's roles and database renamed to the new database's names, and the new
// database's passwords, as SCRAM-SHA-256 verifiers. Every name is a plain identifier.
type Adoption struct {
	// The source's application roles (owner and the alternate login) and database.
	FromOwner, FromAlt, FromDatabase string
	// The new database's.
	Owner, Alt, Database string
	// Login is the role the new credentials Secret names; it gets LoginVerifier, the other
	// login role none (as after create).
	Login, LoginVerifier string
	// Superuser gets SuperuserVerifier.
	Superuser, SuperuserVerifier string
}

// SQL is one transaction that adopts the data, ending with psql's \q so that psql exits at the
// end of it whether or not its stdin is closed. Only verifiers are sent: the server, its log
// and psql never see a password.
func (a Adoption) SQL() (string, error) {
	if !strings.HasPrefix(a.LoginVerifier, "SCRAM-SHA-256$") || !strings.HasPrefix(a.SuperuserVerifier, "SCRAM-SHA-256$") {
		return "", errors.New("refusing to send a password that is not a SCRAM-SHA-256 verifier")
	}
	if a.Login != a.Owner && a.Login != a.Alt {
		return "", errors.New("the login role must be the owner or the alternate login")
	}
	var b strings.Builder
	stmt := func(s string) { b.WriteString(s + ";\n") }
	stmt("BEGIN")
	if a.FromDatabase != a.Database {
		stmt("ALTER DATABASE " + ident(a.FromDatabase) + " RENAME TO " + ident(a.Database))
	}
	if a.FromOwner != a.Owner {
		stmt("ALTER ROLE " + ident(a.FromOwner) + " RENAME TO " + ident(a.Owner))
	}
	if a.FromAlt != a.Alt {
		stmt("ALTER ROLE " + ident(a.FromAlt) + " RENAME TO " + ident(a.Alt))
	}
	// The alternate login starts its sessions as the owner, by name.
	stmt("ALTER ROLE " + ident(a.Alt) + " SET role = " + literal(a.Owner))
	for _, r := range []string{a.Owner, a.Alt} {
		if r == a.Login {
			stmt("ALTER ROLE " + ident(r) + " PASSWORD " + literal(a.LoginVerifier))
		} else {
			stmt("ALTER ROLE " + ident(r) + " PASSWORD NULL")
		}
	}
	stmt("ALTER ROLE " + ident(a.Superuser) + " PASSWORD " + literal(a.SuperuserVerifier))
	stmt("COMMIT")
	b.WriteString("\\q\n")
	return b.String(), nil
}
