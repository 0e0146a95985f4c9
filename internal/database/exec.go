package database

import (
	"context"
	"errors"
	"io"
	"strings"

	"github.com/stackblaze/stackblaze/internal/kube"
)

// ContainerName is the database container's name.
const ContainerName = "postgres"

// Exec runs argv in database name's container (pods/exec). stdin may be nil.
func Exec(ctx context.Context, c *kube.Client, name string, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return kube.Exec(ctx, c, c.Namespace, PodName(name), ContainerName, argv, stdin, stdout, stderr)
}

// ExecOutput runs argv in database name's container and returns its stdout; a failure is a
// *kube.ExecError that names the command (for a shell script, the pgbackrest command it runs).
func ExecOutput(ctx context.Context, c *kube.Client, name string, argv []string) (string, error) {
	out, err := kube.ExecOutput(ctx, c, c.Namespace, PodName(name), ContainerName, argv)
	var ee *kube.ExecError
	if errors.As(err, &ee) && argv[0] == "sh" && len(argv) > 2 {
		ee.Command = scriptCommand(argv[2])
	}
	return out, err
}

// scriptCommand names what a shell script runs: "pgbackrest backup", or "sh".
func scriptCommand(script string) string {
	f := strings.Fields(script)
	for i := len(f) - 1; i >= 0; i-- {
		if f[i] == "pgbackrest" && i+1 < len(f) {
			return "pgbackrest " + f[i+1]
		}
	}
	return "sh"
}
