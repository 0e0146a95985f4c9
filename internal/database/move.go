package database

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/kube"
)

// Moved is what copy, pull and push did.
type Moved struct {
	From    string  `json:"from"`
	To      string  `json:"to"`
	Format  string  `json:"format"`
	Objects int     `json:"objects"`
	Seconds float64 `json:"seconds"`
}

// MoveOptions say how copy, pull and push run.
type MoveOptions struct {
	// Clean drops the target's objects of the same names first; without it the target must be
	// empty.
	Clean    bool
	Progress Progress
	Now      func() time.Time
}

// copyScript runs in the target's container: it reads the source's password from its first
// line of input (never argv), dumps the source over the pod network with the target's own
// pg_dump (a newer major reads an older server) and restores it as the target's application
// role, in one transaction. $1 host, $2 user, $3 source database, $4 target database and role,
// $5 "clean" or "".
const copyScript = `set -euo pipefail
IFS= read -r PGPASSWORD
export PGPASSWORD PGOPTIONS='-c lock_timeout=10s'
clean=()
if [ "$5" = clean ]; then clean=(--clean --if-exists); fi
pg_dump --format=custom --no-owner --no-privileges --host="$1" --port=5432 --username="$2" --dbname="$3" |
  pg_restore --no-owner --no-privileges --role="$4" --single-transaction --exit-on-error "${clean[@]}" --dbname="$4"`

// Copy copies database source's application database into database target's, inside the
// cluster: the target's pod dumps the source through its Service and restores it; the data never
// leaves the cluster. The target's major must be the source's or newer; the target must be empty
// unless o.Clean.
func Copy(ctx context.Context, c *kube.Client, source, target string, o MoveOptions) (*Moved, error) {
	prog := progressOr(o.Progress)
	now := clockOr(o.Now)
	cs, ns := c.Clientset, c.Namespace
	if source == target {
		return nil, inputErrorf("db copy needs two databases: %s is both the source and the target", source)
	}
	src, err := GetDatabase(ctx, cs, ns, source)
	if err != nil {
		return nil, err
	}
	dst, err := GetDatabase(ctx, cs, ns, target)
	if err != nil {
		return nil, err
	}
	if VersionOf(dst) < VersionOf(src) {
		return nil, inputErrorf("%s runs PostgreSQL %d and %s PostgreSQL %d: a copy goes to the same major or a newer one (pg_dump of the target's major reads the source); upgrade %s first (`stackblaze db upgrade %s --version %d`)",
			source, VersionOf(src), target, VersionOf(dst), target, target, VersionOf(src))
	}
	for _, n := range []string{source, target} {
		if _, err := readyPod(ctx, cs, ns, n); err != nil {
			return nil, err
		}
	}
	if err := needEmpty(ctx, c, target, o.Clean); err != nil {
		return nil, err
	}
	secret, err := cs.CoreV1().Secrets(ns).Get(ctx, CredentialsSecretName(source), metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get secret %s: %w", CredentialsSecretName(source), err)
	}
	clean := ""
	if o.Clean {
		clean = "clean"
	}
	prog.Start("Copying %s into %s (in the cluster)", source, target)
	start := now()
	in := strings.NewReader(string(secret.Data["password"]) + "\n")
	var stderr bytes.Buffer
	err = kube.Exec(ctx, c, ns, PodName(target), ContainerName,
		[]string{"bash", "-c", copyScript, "copy", source, string(secret.Data["username"]), string(secret.Data["database"]), RoleName(target), clean},
		in, io.Discard, &stderr)
	stopProgress(prog)
	if err != nil {
		return nil, fmt.Errorf("copy %s into %s: %w: %s", source, target, err, tail(stderr.String(), err))
	}
	res := &Moved{From: source, To: target, Format: "custom", Seconds: now().Sub(start).Seconds()}
	res.Objects, _ = UserObjects(ctx, c, target)
	prog.Done("Copied %s into %s in %.1f s (%d objects)", source, target, res.Seconds, res.Objects)
	return res, nil
}

// needEmpty refuses (an *InputError) a target database with objects of its own, unless clean.
func needEmpty(ctx context.Context, c *kube.Client, name string, clean bool) error {
	if clean {
		return nil
	}
	n, err := UserObjects(ctx, c, name)
	if err != nil {
		return err
	}
	if n > 0 {
		return inputErrorf("database %s is not empty (%d objects): give --clean to replace the objects of the same names (it asks first)", name, n)
	}
	return nil
}

// tail is the end of a command's error output, or err when it said nothing.
func tail(stderr string, err error) string {
	s := strings.TrimSpace(stderr)
	if s == "" {
		return err.Error()
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 6 {
		lines = lines[len(lines)-6:]
	}
	return strings.Join(lines, "\n")
}

// MachineURL is a PostgreSQL on this machine (pull's target, push's source): the URL without its
// password, which goes to the local tools in PGPASSWORD only.
type MachineURL struct {
	URL      string
	Password string
	// Display is the URL for messages (no password).
	Display string
}

// ParseMachineURL reads a postgres:// URL (an *InputError when it is not one), taking its password
// out (from the user part or a password parameter).
func ParseMachineURL(s string) (MachineURL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return MachineURL{}, inputErrorf("%q is not a PostgreSQL URL: use postgres://USER:PASSWORD@HOST:PORT/DATABASE", RedactURL(s))
	}
	l := MachineURL{}
	if u.User != nil {
		l.Password, _ = u.User.Password()
		u.User = url.User(u.User.Username())
	}
	if q := u.Query(); q.Has("password") {
		if l.Password == "" {
			l.Password = q.Get("password")
		}
		q.Del("password")
		u.RawQuery = q.Encode()
	}
	l.URL, l.Display = u.String(), u.String()
	return l, nil
}

// localTool runs a PostgreSQL client tool of this machine with the URL's password in its
// environment.
func localTool(ctx context.Context, l MachineURL, name string, args ...string) (*exec.Cmd, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, inputErrorf("%s is not installed on this machine: pull and push use PostgreSQL's client tools (Debian and Ubuntu: apt-get install postgresql-client; macOS: brew install libpq)", name)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10")
	if l.Password != "" {
		// The URL's password; without one, the user's PGPASSWORD or ~/.pgpass.
		cmd.Env = append(cmd.Env, "PGPASSWORD="+l.Password)
	}
	return cmd, nil
}

// localMajor is the major version of a local client tool (pg_restore --version).
func localMajor(ctx context.Context, l MachineURL, tool string) (int, error) {
	cmd, err := localTool(ctx, l, tool, "--version")
	if err != nil {
		return 0, err
	}
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", tool, err)
	}
	m := regexp.MustCompile(`\) (\d+)`).FindStringSubmatch(string(out))
	if m == nil {
		return 0, fmt.Errorf("%s --version said %q", tool, strings.TrimSpace(string(out)))
	}
	return strconv.Atoi(m[1])
}

// localObjects counts a local database's objects outside the system schemas.
func localObjects(ctx context.Context, l MachineURL) (int, error) {
	cmd, err := localTool(ctx, l, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", l.URL, "-c", userObjectsQuery)
	if err != nil {
		return 0, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("connect to %s: %s", l.Display, tail(stderr.String(), err))
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

// Pull copies database name's application database into a PostgreSQL on this machine: a dump
// made in the database's pod with the server's own pg_dump, restored by the local tools: custom
// format and pg_restore when they are of the server's major or newer, otherwise plain SQL and
// psql (the settings an older server does not know are left out). The target must be empty
// unless o.Clean; the objects belong to the URL's user.
func Pull(ctx context.Context, c *kube.Client, name, target string, o MoveOptions) (*Moved, error) {
	prog := progressOr(o.Progress)
	now := clockOr(o.Now)
	l, err := ParseMachineURL(target)
	if err != nil {
		return nil, err
	}
	sts, err := GetDatabase(ctx, c.Clientset, c.Namespace, name)
	if err != nil {
		return nil, err
	}
	if _, err := readyPod(ctx, c.Clientset, c.Namespace, name); err != nil {
		return nil, err
	}
	major, err := localMajor(ctx, l, "pg_restore")
	if err != nil {
		return nil, err
	}
	n, err := localObjects(ctx, l)
	if err != nil {
		return nil, err
	}
	if n > 0 && !o.Clean {
		return nil, inputErrorf("%s is not empty (%d objects): give --clean to replace the objects of the same names (it asks first)", l.Display, n)
	}
	format := "custom"
	var restore *exec.Cmd
	if major >= VersionOf(sts) {
		args := []string{"--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--dbname", l.URL}
		if o.Clean {
			args = append(args, "--clean", "--if-exists")
		}
		restore, err = localTool(ctx, l, "pg_restore", args...)
	} else {
		// Not --single-transaction: psql would commit whatever came before the end of a dump cut
		// short. The transaction is framed here, its COMMIT sent only once the dump is complete.
		format = "plain"
		restore, err = localTool(ctx, l, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", l.URL)
	}
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	var dumpErr error
	dumpDone := make(chan struct{})
	var in io.Reader = pr
	if format == "plain" {
		in = committedOnlyIfComplete(newerSettingsFilter(pr), dumpDone, &dumpErr)
	}
	restore.Stdin = in
	var stderr bytes.Buffer
	restore.Stdout, restore.Stderr = io.Discard, &stderr
	prog.Start("Pulling %s into %s (%s format)", name, l.Display, format)
	start := now()
	if err := restore.Start(); err != nil {
		stopProgress(prog)
		return nil, err
	}
	go func() {
		_, dumpErr = Dump(ctx, c, name, pw, DumpOptions{Format: format, Clean: o.Clean && format == "plain", NoOwner: true})
		close(dumpDone)
		pw.CloseWithError(dumpErr)
	}()
	rerr := restore.Wait()
	// A restore that ended early leaves the dump nobody to write to.
	pr.CloseWithError(io.ErrClosedPipe)
	<-dumpDone
	stopProgress(prog)
	switch {
	case dumpErr != nil && !errors.Is(dumpErr, io.ErrClosedPipe):
		return nil, dumpErr
	case rerr != nil:
		return nil, fmt.Errorf("restore into %s: %s", l.Display, tail(stderr.String(), rerr))
	case dumpErr != nil:
		return nil, dumpErr
	}
	res := &Moved{From: name, To: l.Display, Format: format, Seconds: now().Sub(start).Seconds()}
	res.Objects, _ = localObjects(ctx, l)
	prog.Done("Pulled %s into %s in %.1f s (%d objects)", name, l.Display, res.Seconds, res.Objects)
	return res, nil
}

// committedOnlyIfComplete frames a plain dump in a transaction: BEGIN, the dump, and COMMIT only
// when the dump ended without an error (*err, set before done is closed); a dump cut short
// ends the input without COMMIT, and the server rolls back.
func committedOnlyIfComplete(dump io.Reader, done <-chan struct{}, err *error) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		if _, werr := io.WriteString(pw, "BEGIN;\n"); werr != nil {
			pw.CloseWithError(werr)
			return
		}
		if _, cerr := io.Copy(pw, dump); cerr != nil {
			pw.CloseWithError(cerr)
			return
		}
		<-done
		if *err != nil {
			pw.CloseWithError(*err)
			return
		}
		_, werr := io.WriteString(pw, "COMMIT;\n")
		pw.CloseWithError(werr)
	}()
	return pr
}

// newerSettings are the lines a newer pg_dump writes that an older server or psql does not know:
// transaction_timeout (17), and the \restrict guard of psql meta-commands (17.6, 16.10, 15.14;
// the dump comes from our own server).
var newerSettings = []string{"SET transaction_timeout = ", "\\restrict ", "\\unrestrict "}

// newerSettingsFilter leaves out of a plain dump the settings of newerSettings.
func newerSettingsFilter(r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		br := bufio.NewReaderSize(r, 1<<20)
		bw := bufio.NewWriterSize(pw, 1<<20)
		mid := false
		for {
			line, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				// A long line (COPY data): no setting; pass it on as it comes.
				mid = true
				if _, werr := bw.Write(line); werr != nil {
					pw.CloseWithError(werr)
					return
				}
				continue
			}
			skip := false
			for _, s := range newerSettings {
				skip = skip || !mid && bytes.HasPrefix(line, []byte(s))
			}
			mid = false
			if !skip {
				if _, werr := bw.Write(line); werr != nil {
					pw.CloseWithError(werr)
					return
				}
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = bw.Flush()
				}
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr
}

// Push copies a PostgreSQL database on this machine into database name's application database:
// this machine's pg_dump (custom format, without owners and privileges) streamed into the pod,
// where the server's own pg_restore restores it in one transaction as the application role. The
// server's major must be the local pg_dump's or newer; the target must be empty unless o.Clean.
func Push(ctx context.Context, c *kube.Client, source, name string, o MoveOptions) (*Moved, error) {
	prog := progressOr(o.Progress)
	now := clockOr(o.Now)
	l, err := ParseMachineURL(source)
	if err != nil {
		return nil, err
	}
	sts, err := GetDatabase(ctx, c.Clientset, c.Namespace, name)
	if err != nil {
		return nil, err
	}
	major, err := localMajor(ctx, l, "pg_dump")
	if err != nil {
		return nil, err
	}
	if major > VersionOf(sts) {
		return nil, inputErrorf("this machine's pg_dump is %d and %s runs PostgreSQL %d: its pg_restore cannot read a newer dump; use pg_dump %d or older (or upgrade %s)", major, name, VersionOf(sts), VersionOf(sts), name)
	}
	if err := needEmpty(ctx, c, name, o.Clean); err != nil {
		return nil, err
	}
	dump, err := localTool(ctx, l, "pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--dbname", l.URL)
	if err != nil {
		return nil, err
	}
	out, err := dump.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	dump.Stderr = &stderr
	prog.Start("Pushing %s into %s", l.Display, name)
	start := now()
	if err := dump.Start(); err != nil {
		stopProgress(prog)
		return nil, err
	}
	_, rerr := Restore(ctx, c, name, out, RestoreOptions{Clean: o.Clean})
	if rerr != nil {
		// pg_dump's output has no reader any more.
		_ = dump.Process.Kill()
	}
	derr := dump.Wait()
	stopProgress(prog)
	var exit *exec.ExitError
	killed := errors.As(derr, &exit) && exit.ProcessState.Sys().(syscall.WaitStatus).Signaled()
	switch {
	case derr != nil && !killed:
		// pg_dump failed first; the restore only saw its output end.
		return nil, fmt.Errorf("pg_dump of %s: %s", l.Display, tail(stderr.String(), derr))
	case rerr != nil:
		return nil, rerr
	}
	res := &Moved{From: l.Display, To: name, Format: "custom", Seconds: now().Sub(start).Seconds()}
	res.Objects, _ = UserObjects(ctx, c, name)
	prog.Done("Pushed %s into %s in %.1f s (%d objects)", l.Display, name, res.Seconds, res.Objects)
	return res, nil
}
