package cmdutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
)

// Error is an error with an exit code and an optional hint (what to do next), printed once under
// the message.
type Error struct {
	Code int
	Err  error
	Hint string
	// Silent errors set the exit code and print nothing: the child process that `db run` and
	// `db migrate` ran has already said what went wrong.
	Silent bool
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf makes an Error with a code.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// WithHint returns e with a hint.
func (e *Error) WithHint(format string, args ...any) *Error {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// UsageErrorf is a usage error: exit code 2.
func UsageErrorf(format string, args ...any) *Error {
	return Errorf(ExitUsage, format, args...)
}

// ExitCode maps an error to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if errors.Is(err, context.Canceled) {
		return ExitInterrupted
	}
	return ExitError
}

// Hint returns the hint an error carries, if any.
func Hint(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Hint
	}
	return ""
}

// Scope names where a command acted, so that errors can say it.
type Scope struct {
	Context   string
	Server    string
	Namespace string
	Database  string
}

var forbiddenRE = regexp.MustCompile(`cannot (\w+) resource "([^"]+)"(?: in API group "([^"]*)")?(?: in the namespace "([^"]+)")?`)

// KubeError translates an error from the cluster into words about the user's database. Errors that
// are already an *Error pass through.
func KubeError(err error, s Scope) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Code: ExitInterrupted, Err: errors.New("interrupted")}
	}
	var nf *database.NotFoundError
	if errors.As(err, &nf) {
		return (&Error{Code: ExitNotFound, Err: err}).WithHint("list the databases of this namespace with `stackblaze db list -n %s`", nf.Namespace)
	}
	var ie *database.InputError
	if errors.As(err, &ie) {
		return &Error{Code: ExitUsage, Err: err}
	}
	var ce *database.ConflictError
	if errors.As(err, &ce) {
		return (&Error{Code: ExitConflict, Err: fmt.Errorf("database %s exists with a different spec:\n  %s", ce.Name, strings.Join(ce.Differences, "\n  "))}).
			WithHint("run create with the values in the cluster to check it; to change them, use `stackblaze db update %s --plan PLAN`, `db resize %s --storage SIZE` or `db upgrade %s --version N`", ce.Name, ce.Name, ce.Name)
	}
	var ms *database.MissingSecretError
	if errors.As(err, &ms) {
		return (&Error{Code: ExitNotFound, Err: err}).
			WithHint("run `stackblaze db create %s` with its spec to write it again (a new password: data kept from before will not accept it)", ms.Database)
	}
	var foreign *database.ForeignObjectError
	if errors.As(err, &foreign) {
		return (&Error{Code: ExitConflict, Err: err}).
			WithHint("nothing was changed; choose another database name, or rename or remove %s if it is yours to remove", foreign.Object)
	}
	var nr *database.NotReadyError
	if errors.As(err, &nr) {
		return (&Error{Code: ExitTimeout, Err: err}).
			WithHint("%s\nthe objects are written: run `stackblaze db status %s` to follow it, or create again with a longer --timeout", strings.Join(nr.Why, "\n"), nr.Name)
	}
	var lt *database.LoginTimeoutError
	if errors.As(err, &lt) {
		return (&Error{Code: ExitTimeout, Err: err}).
			WithHint("the pod is ready but PostgreSQL did not accept the application's login; see `kubectl logs %s -n %s`", database.PodName(lt.Name), s.Namespace)
	}
	var lr *database.LoginRefusedError
	if errors.As(err, &lr) {
		return (&Error{Code: ExitError, Err: err}).
			WithHint("the data directory may predate the Secret %s (it was deleted with its data kept?); `stackblaze db delete %s --delete-data` starts afresh", database.CredentialsSecretName(lr.Name), lr.Name)
	}
	var fe *kube.ForbiddenError
	if errors.As(err, &fe) {
		// The permission alone: what the request was part of only repeats the database.
		msg := fmt.Sprintf("you are not allowed to %s in namespace %s", fe.Access, fe.Namespace)
		if s.Database != "" {
			msg = fmt.Sprintf("database %s: %s", s.Database, msg)
		}
		if s.Context != "" {
			msg += fmt.Sprintf(" (context %q)", s.Context)
		}
		return (&Error{Code: ExitForbidden, Err: errors.New(msg)}).
			WithHint("ask a cluster admin for the Role in docs/rbac.md in namespace %s, or check `kubectl auth can-i --list -n %s`", fe.Namespace, fe.Namespace)
	}
	var nc *kube.NoContextError
	if errors.As(err, &nc) {
		hint := "no contexts are defined in the kubeconfig"
		if len(nc.Available) > 0 {
			hint = "available contexts: " + strings.Join(nc.Available, ", ")
		}
		return &Error{Code: ExitUsage, Err: err, Hint: hint}
	}
	var cf *kube.ConfigFileError
	if errors.As(err, &cf) {
		return (&Error{Code: ExitUsage, Err: err}).WithHint("check --kubeconfig, KUBECONFIG and the kubeconfig setting of your stackblaze config")
	}
	var nk *kube.NoConfigError
	if errors.As(err, &nk) {
		return (&Error{Code: ExitUnreachable, Err: err}).WithHint("point --kubeconfig or KUBECONFIG at a kubeconfig file, or run inside a cluster")
	}
	who := ""
	if s.Context != "" {
		who = fmt.Sprintf(" (context %q)", s.Context)
	}
	switch {
	case apierrors.IsForbidden(err):
		msg := "forbidden"
		if m := forbiddenRE.FindStringSubmatch(err.Error()); m != nil {
			res := m[2]
			if m[3] != "" {
				res += "." + m[3]
			}
			ns := m[4]
			if ns == "" {
				ns = s.Namespace
			}
			msg = fmt.Sprintf("you are not allowed to %s %s in namespace %s", m[1], res, ns)
		} else {
			msg = err.Error()
		}
		if s.Database != "" {
			msg = fmt.Sprintf("database %s: %s", s.Database, msg)
		}
		return (&Error{Code: ExitForbidden, Err: errors.New(msg + who)}).
			WithHint("ask a cluster admin for the Role in docs/rbac.md in namespace %s, or check `kubectl auth can-i --list -n %s`", s.Namespace, s.Namespace)
	case apierrors.IsUnauthorized(err):
		return (&Error{Code: ExitForbidden, Err: fmt.Errorf("the cluster at %s did not accept your credentials%s", s.Server, who)}).
			WithHint("your token may have expired: log in again, or check --kubeconfig and --context")
	case isUnreachable(err):
		return (&Error{Code: ExitUnreachable, Err: fmt.Errorf("cannot reach the cluster at %s%s: %s", s.Server, who, rootCause(err))}).
			WithHint("check that the cluster is running and that --context/--kubeconfig point at it")
	case apierrors.IsNotFound(err) && s.Database != "":
		return (&Error{Code: ExitNotFound, Err: fmt.Errorf("database %s: %w", s.Database, err)})
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: ExitTimeout, Err: err}
	}
	return err
}

func isUnreachable(err error) bool {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var urlErr *url.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	case errors.As(err, &dnsErr):
		return true
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return true
	case errors.As(err, &urlErr) && urlErr.Timeout():
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host") || strings.Contains(msg, "i/o timeout")
}

func rootCause(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "no such host " + dnsErr.Name
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to host"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}
