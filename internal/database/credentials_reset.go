package database

import (
	"bytes"
	"context"
	"io"
	"strings"

	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/pg"
)

// ResetCredentials makes the data of database dst, restored from a backup of src (src == dst for a
// restore in place), accept dst's Secrets: src's roles and database are renamed to dst's, and the
// passwords of dst's Secrets set (as SCRAM verifiers, through psql's stdin in the pod, never
// argv) on the role the credentials Secret names and on the superuser; the other login role gets
// none. The restored catalog holds the passwords of the backup's time, which rotations since may
// have replaced. It returns dst's credentials.
func ResetCredentials(ctx context.Context, c *kube.Client, src, dst string) (Credentials, error) {
	creds, err := ReadCredentials(ctx, c.Clientset, c.Namespace, dst)
	if err != nil {
		return Credentials{}, err
	}
	srcCreds := creds
	if src != dst {
		if srcCreds, err = ReadCredentials(ctx, c.Clientset, c.Namespace, src); err != nil {
			return Credentials{}, err
		}
	}
	super, err := ReadSuperuserPassword(ctx, c.Clientset, c.Namespace, dst)
	if err != nil {
		return Credentials{}, err
	}
	a := pg.Adoption{
		FromOwner: RoleName(src), FromAlt: AltRoleName(src), FromDatabase: srcCreds.Database,
		Owner: RoleName(dst), Alt: AltRoleName(dst), Database: creds.Database,
		Login: creds.Username, Superuser: "postgres",
	}
	if a.LoginVerifier, err = pg.ScramVerifier(creds.Password); err != nil {
		return Credentials{}, err
	}
	if a.SuperuserVerifier, err = pg.ScramVerifier(super); err != nil {
		return Credentials{}, err
	}
	sql, err := a.SQL()
	if err != nil {
		return Credentials{}, err
	}
	var stderr bytes.Buffer
	argv := []string{"psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse", "-d", "postgres", "-f", "-"}
	if err := Exec(ctx, c, dst, argv, strings.NewReader(sql), io.Discard, &stderr); err != nil {
		return Credentials{}, &kube.ExecError{Command: "psql (setting the credentials of " + dst + ")", Pod: PodName(dst), Err: err, Stderr: stderr.String()}
	}
	return creds, nil
}
