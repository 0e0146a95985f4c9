package database

import (
	"context"
	"fmt"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ReadCredentials reads the application role's credentials from the database's Secret.
func ReadCredentials(ctx context.Context, cs kubernetes.Interface, ns, name string) (Credentials, error) {
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, CredentialsSecretName(name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Credentials{}, &MissingSecretError{Database: name, Secret: CredentialsSecretName(name)}
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("read secret %s: %w", CredentialsSecretName(name), err)
	}
	c := Credentials{
		Username: string(s.Data["username"]),
		Password: string(s.Data["password"]),
		Database: string(s.Data["database"]),
	}
	if c.Username == "" || c.Password == "" || c.Database == "" {
		return Credentials{}, fmt.Errorf("secret %s lacks username, password or database", CredentialsSecretName(name))
	}
	return c, nil
}

// MissingSecretError says that a database's Secret is gone.
type MissingSecretError struct {
	Database, Secret string
}

func (e *MissingSecretError) Error() string {
	return fmt.Sprintf("database %s has no Secret %s", e.Database, e.Secret)
}

// LocalURL is a connection string for a tunnel on 127.0.0.1.
func LocalURL(c Credentials, port int) string {
	return DatabaseURL(c, "127.0.0.1", port) + "?sslmode=disable"
}

// PGEnv is the environment a client gets to reach a tunnel: DATABASE_URL and libpq's variables.
func PGEnv(c Credentials, port int) map[string]string {
	return map[string]string{
		"DATABASE_URL": LocalURL(c, port),
		"PGHOST":       "127.0.0.1",
		"PGPORT":       strconv.Itoa(port),
		"PGUSER":       c.Username,
		"PGPASSWORD":   c.Password,
		"PGDATABASE":   c.Database,
		"PGSSLMODE":    "disable",
	}
}
