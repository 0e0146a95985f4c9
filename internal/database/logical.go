package database

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stackblaze/stackblaze/internal/kube"
)

// Logical dumps and restores: pg_dump, pg_restore and psql of the server's own major, run in the
// database's pod as the superuser over the Unix socket (no password anywhere), the dump streamed
// through the exec's stdin or stdout.

// Dump formats.
const (
	FormatCustom = "custom"
	FormatPlain  = "plain"
)

// DumpFormats are the formats Dump writes.
var DumpFormats = []string{FormatCustom, FormatPlain}

// DumpOptions say what Dump writes.
type DumpOptions struct {
	// Format is FormatCustom (the default, when empty) or FormatPlain (SQL).
	Format     string
	SchemaOnly bool
	// Tables and ExcludeTables are pg_dump's --table and --exclude-table patterns; each of
	// Tables must match (--strict-names).
	Tables, ExcludeTables []string
	// NoOwner leaves owners and privileges out (pg_dump --no-owner --no-privileges): they name
	// this database's roles.
	NoOwner bool
	// Clean (plain format) drops each object before it is created (pg_dump --clean --if-exists).
	Clean bool
	// Compress is the custom format's gzip level, 0 to 9 (pg_dump --compress); nil is
	// DefaultCompress. pg_dump runs in the database's container, within its plan's CPU limit:
	// level 1 costs a fraction of pg_dump's own default (6) for a dump a little larger.
	Compress *int
}

// DefaultCompress is the custom format's compression level when none is given.
const DefaultCompress = 1

// DumpResult is what Dump wrote.
type DumpResult struct {
	Database string  `json:"database"`
	Format   string  `json:"format"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
}

// ValidateDumpOptions checks o (an *InputError), and returns it with the default format.
func ValidateDumpOptions(o DumpOptions) (DumpOptions, error) {
	if o.Format == "" {
		o.Format = FormatCustom
	}
	if o.Format != FormatCustom && o.Format != FormatPlain {
		return o, inputErrorf("format %q is not one of %s", o.Format, strings.Join(DumpFormats, ", "))
	}
	if o.Compress != nil && (*o.Compress < 0 || *o.Compress > 9) {
		return o, inputErrorf("compression level %d is not allowed: use 0 (none) to 9 (smallest, slowest)", *o.Compress)
	}
	for _, t := range append(append([]string{}, o.Tables...), o.ExcludeTables...) {
		if strings.TrimSpace(t) == "" {
			return o, inputErrorf("an empty table name")
		}
		if strings.HasPrefix(t, "-") {
			return o, inputErrorf("table %q: a table name does not start with -", t)
		}
	}
	return o, nil
}

// DumpArgv is the pg_dump command line run in the pod for database db.
func DumpArgv(db string, o DumpOptions) []string {
	if o.Format == "" {
		o.Format = FormatCustom
	}
	argv := []string{"pg_dump", "--dbname=" + db, "--format=" + o.Format}
	if o.Format == FormatCustom {
		level := DefaultCompress
		if o.Compress != nil {
			level = *o.Compress
		}
		argv = append(argv, "--compress="+strconv.Itoa(level))
	}
	if o.NoOwner {
		argv = append(argv, "--no-owner", "--no-privileges")
	}
	if o.Clean && o.Format == FormatPlain {
		argv = append(argv, "--clean", "--if-exists")
	}
	if o.SchemaOnly {
		argv = append(argv, "--schema-only")
	}
	if len(o.Tables) > 0 {
		argv = append(argv, "--strict-names")
	}
	for _, t := range o.Tables {
		argv = append(argv, "--table="+t)
	}
	for _, t := range o.ExcludeTables {
		argv = append(argv, "--exclude-table="+t)
	}
	return argv
}

// Dump streams a pg_dump of database name's application database, made in its pod, to w.
func Dump(ctx context.Context, c *kube.Client, name string, w io.Writer, o DumpOptions) (*DumpResult, error) {
	o, err := ValidateDumpOptions(o)
	if err != nil {
		return nil, err
	}
	if _, err := GetDatabase(ctx, c.Clientset, c.Namespace, name); err != nil {
		return nil, err
	}
	if _, err := readyPod(ctx, c.Clientset, c.Namespace, name); err != nil {
		return nil, err
	}
	start := time.Now()
	cw := &countingWriter{w: w}
	if stderr, err := execOnce(ctx, c, name, DumpArgv(RoleName(name), o), nil, cw); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &kube.ExecError{Command: "pg_dump", Pod: PodName(name), Err: err, Stderr: stderr}
	}
	return &DumpResult{Database: name, Format: o.Format, Bytes: cw.n, Seconds: time.Since(start).Seconds()}, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// A command run twice through an exec could do harm: a restore run again on the rest of a dump
// could commit part of it (after a --clean's drop); a dump run again would append a second dump
// to the first's bytes. kube.Exec falls back from WebSocket to SPDY only when the upgrade fails,
// before anything ran; as a second guard, execOnce runs a command so that its own failure is no
// exec error (it exits 0 and reports its status on stderr's last line), and so that it runs at
// most once: its input begins with a line only the first run can read (a nonce), and without it
// the command does not run (exit 97).

// OnceArgv wraps argv so that it runs only when the first line of its stdin is "once NONCE"
// (onceInput), with the rest of stdin, and reports its exit status on stderr
// ("stackblaze-exit N", parseExitStatus) instead of exiting with it.
func OnceArgv(nonce string, argv []string) []string {
	return append([]string{"bash", "-c", onceScript, nonce}, argv...)
}

// onceScript reads stdin's first line one byte at a time (bash's read on a pipe), so that argv
// gets the rest whole.
const onceScript = `IFS= read -r line && [ "$line" = "once $0" ] || exit 97
"$@"
printf '\nstackblaze-exit %d\n' "$?" >&2`

// onceInput is stdin for OnceArgv: the nonce's line, then r (nil: nothing more).
func onceInput(nonce string, r io.Reader) io.Reader {
	first := strings.NewReader("once " + nonce + "\n")
	if r == nil {
		return first
	}
	return io.MultiReader(first, r)
}

var exitStatusRE = regexp.MustCompile(`(?m)^stackblaze-exit (\d+)$`)

// parseExitStatus finds the status OnceArgv reported in stderr, and returns stderr without it.
func parseExitStatus(stderr string) (rest string, status int, ok bool) {
	m := exitStatusRE.FindAllStringSubmatchIndex(stderr, -1)
	if m == nil {
		return strings.TrimSpace(stderr), 0, false
	}
	last := m[len(m)-1]
	status, _ = strconv.Atoi(stderr[last[2]:last[3]])
	return strings.TrimSpace(stderr[:last[0]] + stderr[last[1]:]), status, true
}

// execOnce runs argv in database name's container through OnceArgv, and returns its stderr
// and, when it failed, an error (an exec error, or its exit status).
func execOnce(ctx context.Context, c *kube.Client, name string, argv []string, stdin io.Reader, stdout io.Writer) (string, error) {
	nonce := newNonce()
	var stderr bytes.Buffer
	err := Exec(ctx, c, name, OnceArgv(nonce, argv), onceInput(nonce, stdin), stdout, &stderr)
	rest, status, ok := parseExitStatus(stderr.String())
	switch {
	case err != nil:
		return rest, err
	case !ok:
		return rest, errors.New("ended without an exit status")
	case status != 0:
		return rest, fmt.Errorf("exit status %d", status)
	}
	return rest, nil
}

func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// The first bytes of the dumps Restore takes.
const (
	customMagic = "PGDMP"
	plainHeader = "--\n-- PostgreSQL database dump"
	// SniffLen is how many bytes SniffFormat needs to tell (fewer at the end of a short file).
	SniffLen = 512
)

// SniffFormat tells a dump's format from its first bytes (up to SniffLen): FormatCustom for
// pg_dump's custom format ("PGDMP"), FormatPlain for a plain SQL dump (its "-- PostgreSQL
// database dump" header); anything else is an *InputError that says what it looks like.
func SniffFormat(head []byte) (string, error) {
	s := string(head)
	norm := strings.ReplaceAll(s, "\r\n", "\n")
	switch {
	case strings.HasPrefix(s, customMagic):
		return FormatCustom, nil
	case strings.HasPrefix(norm, plainHeader):
		if strings.HasPrefix(norm, "--\n-- PostgreSQL database dump complete") {
			break
		}
		return FormatPlain, nil
	case len(head) == 0:
		return "", inputErrorf("the input is empty: not a dump")
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "", inputErrorf("the input is gzip-compressed: decompress it first (gunzip -c FILE | stackblaze db import NAME --file -)")
	case strings.HasPrefix(norm, "--\n-- PostgreSQL database cluster dump"):
		return "", inputErrorf("the input is a pg_dumpall dump of a whole server: import takes one database's dump (pg_dump, custom or plain format)")
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return "", inputErrorf("the input is a tar archive (pg_dump --format tar?): import takes pg_dump's custom or plain format")
	case bytes.HasPrefix(head, []byte("toc.dat")):
		return "", inputErrorf("the input looks like a directory-format dump: import takes pg_dump's custom or plain format")
	}
	return "", inputErrorf("the input is not a PostgreSQL dump: a custom-format dump begins with %q, a plain one with the header \"-- PostgreSQL database dump\"", customMagic)
}

// RestoreOptions say how Restore restores.
type RestoreOptions struct {
	// Clean drops every object the application role owns in the application's database, in the
	// restore's transaction, before the restore (a non-empty target is refused without it).
	Clean    bool
	Progress Progress
}

// RestoreResult is what Restore did.
type RestoreResult struct {
	Database string  `json:"database"`
	Format   string  `json:"format"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
	// Objects counts the objects of the application's database after the restore (UserObjects).
	Objects int `json:"objects"`
}

// NotEmptyError is a restore into a database that has objects already, without Clean.
type NotEmptyError struct {
	Name    string
	Objects int
}

func (e *NotEmptyError) Error() string {
	return fmt.Sprintf("database %s is not empty (%d tables, views, sequences, functions or types): import restores into an empty database only, unless --clean", e.Name, e.Objects)
}

// As makes it an *InputError for errors.As: cmdutil.KubeError gives it exit code 2.
func (e *NotEmptyError) As(target any) bool {
	if t, ok := target.(**InputError); ok {
		*t = &InputError{Msg: e.Error()}
		return true
	}
	return false
}

// userObjectsQuery counts the tables, views, materialized views, sequences, foreign tables,
// functions and types (not the row types of tables nor array types) outside the system schemas
// that are not members of an extension.
const userObjectsQuery = `with sys as (
  select oid from pg_namespace
  where nspname in ('pg_catalog', 'information_schema') or nspname like 'pg\_toast%' or nspname like 'pg\_temp\_%'),
ext as (select classid, objid from pg_depend where deptype = 'e')
select
 (select count(*) from pg_class c
   where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f') and c.relnamespace not in (select oid from sys)
     and (c.relkind <> 'S' or not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'i'))
     and not exists (select 1 from ext where classid = 'pg_class'::regclass and objid = c.oid))
 + (select count(*) from pg_proc p
   where p.pronamespace not in (select oid from sys)
     and not exists (select 1 from ext where classid = 'pg_proc'::regclass and objid = p.oid))
 + (select count(*) from pg_type t
   where t.typnamespace not in (select oid from sys) and t.typtype in ('b', 'c', 'd', 'e', 'r')
     and (t.typrelid = 0 or (select relkind from pg_class where oid = t.typrelid) = 'c')
     and not exists (select 1 from pg_type e where e.typarray = t.oid)
     and not exists (select 1 from ext where classid = 'pg_type'::regclass and objid = t.oid))`

// UserObjects counts the objects of the application database outside the system schemas (0:
// empty): tables, views, sequences (not those of identity columns), functions and types, leaving
// out those of extensions (pg_stat_statements).
func UserObjects(ctx context.Context, c *kube.Client, name string) (int, error) {
	if _, err := GetDatabase(ctx, c.Clientset, c.Namespace, name); err != nil {
		return 0, err
	}
	if _, err := readyPod(ctx, c.Clientset, c.Namespace, name); err != nil {
		return 0, err
	}
	return userObjects(ctx, c, name)
}

func userObjects(ctx context.Context, c *kube.Client, name string) (int, error) {
	out, err := ExecOutput(ctx, c, name, []string{"psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", RoleName(name), "-c", userObjectsQuery})
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0, fmt.Errorf("count the objects of database %s: %q", name, out)
	}
	return n, nil
}

// restoreScript is run by bash in the pod with $1 the database, $2 the application role, $3 the
// format, $4 "clean" or "" and $5 the filter (restoreFilter). It builds one transaction for psql: BEGIN, SET ROLE to the
// application role (every object it creates is the role's), with clean DROP OWNED BY the role,
// then the dump as SQL (a custom dump through pg_restore --no-owner --no-privileges), and COMMIT
// only once the whole dump went through and its "dump complete" footer was seen: a truncated or
// unreadable dump ends psql's input without COMMIT, and the server rolls everything back. (psql
// --single-transaction would COMMIT at the end of its input, whatever came before.) The filter
// (restoreFilter) drops what would not run as the application role: statements that give
// objects to other roles or grant privileges (plain dumps; pg_restore leaves them out already),
// role switches, and comments on extensions, which only their owner may set (the
// pg_stat_statements of every database here belongs to the superuser).
const restoreScript = `set -o pipefail
db=$1 role=$2 format=$3 clean=$4 filter=$5
{
  printf 'BEGIN;\nSET client_min_messages = warning;\nSET lock_timeout = '"'"'10s'"'"';\nSET ROLE "%s";\n' "$role"
  if [ "$clean" = clean ]; then printf 'DROP OWNED BY "%s";\n' "$role"; fi
  if [ "$format" = custom ]; then
    pg_restore --no-owner --no-privileges --file=- || exit 1
  else
    cat
  fi | awk -v format="$format" "$filter" && printf 'COMMIT;\n'
} | psql -X -q -v ON_ERROR_STOP=1 -d "$db" >/dev/null`

// restoreFilter is the awk program between the dump and psql (see restoreScript). Lines of COPY
// data pass untouched; it fails at the end unless the dump's footer came.
const restoreFilter = `BEGIN { copy = 0; complete = 0 }
copy { print; if ($0 == "\\.") copy = 0; next }
/^COPY .* FROM stdin;$/ { copy = 1; print; next }
/^-- PostgreSQL database dump complete/ { complete = 1 }
/^COMMENT ON EXTENSION / { next }
format == "plain" && /^(ALTER .* OWNER TO .*;|GRANT .*|REVOKE .*|ALTER DEFAULT PRIVILEGES .*|SET SESSION AUTHORIZATION .*|RESET SESSION AUTHORIZATION;|SET ROLE .*|RESET ROLE;|\\connect .*)\r?$/ { next }
{ print }
END { if (!complete) { print "stackblaze: the dump ends before its end (\"-- PostgreSQL database dump complete\" never came): truncated?" > "/dev/stderr"; exit 3 } }`

// RestoreArgv is the command run in the pod to restore a dump of format into database db as
// role (see restoreScript); the dump is its stdin.
func RestoreArgv(db, role, format string, clean bool) []string {
	c := ""
	if clean {
		c = "clean"
	}
	return []string{"bash", "-c", restoreScript, "restore", db, role, format, c, restoreFilter}
}

// Restore reads a dump (custom or plain, detected from its first bytes: *InputError when it is
// neither) from r and restores it into database name's application database in its pod, in one
// transaction, every object owned by the application role. Without Clean a non-empty target is
// a *NotEmptyError (an *InputError for errors.As).
func Restore(ctx context.Context, c *kube.Client, name string, r io.Reader, o RestoreOptions) (*RestoreResult, error) {
	prog := progressOr(o.Progress)
	cr := &countingReader{r: r}
	br := bufio.NewReaderSize(cr, 64*1024)
	head, err := br.Peek(SniffLen)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	format, err := SniffFormat(head)
	if err != nil {
		return nil, err
	}
	if _, err := GetDatabase(ctx, c.Clientset, c.Namespace, name); err != nil {
		return nil, err
	}
	if _, err := readyPod(ctx, c.Clientset, c.Namespace, name); err != nil {
		return nil, err
	}
	if !o.Clean {
		n, err := userObjects(ctx, c, name)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			return nil, &NotEmptyError{Name: name, Objects: n}
		}
	}
	start := time.Now()
	prog.Start("Restoring a %s dump into %s", format, name)
	stderr, err := execOnce(ctx, c, name, RestoreArgv(RoleName(name), RoleName(name), format, o.Clean), br, io.Discard)
	if err != nil {
		stopProgress(prog)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &RestoreError{Name: name, Format: format, Err: err, Stderr: restoreStderr(stderr)}
	}
	res := &RestoreResult{Database: name, Format: format, Bytes: cr.n, Seconds: time.Since(start).Seconds()}
	if n, err := userObjects(ctx, c, name); err == nil {
		res.Objects = n
	}
	prog.Done("Restored %d objects into %s", res.Objects, name)
	return res, nil
}

// RestoreError is a restore that failed in the pod; nothing of it was committed.
type RestoreError struct {
	Name   string
	Format string
	Err    error
	// Stderr is what pg_restore, psql or the filter said.
	Stderr string
}

func (e *RestoreError) Error() string {
	msg := fmt.Sprintf("restore into %s failed, nothing was changed", e.Name)
	if e.Stderr != "" {
		return msg + ":\n" + e.Stderr
	}
	return fmt.Sprintf("%s: %v", msg, e.Err)
}
func (e *RestoreError) Unwrap() error { return e.Err }

// restoreStderr keeps what says why a restore failed: psql's error and its context, not the
// pages of a long transcript.
func restoreStderr(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 12 {
		lines = lines[len(lines)-12:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// SourceDumpArgs are the arguments of this machine's pg_dump for a dump of the database at
// rawURL (a postgres:// or postgresql:// URL) in custom format, and the URL's password, which
// must reach pg_dump only through its PGPASSWORD: the URL in the arguments has none. Anything
// but such a URL is an *InputError.
func SourceDumpArgs(rawURL string) (args []string, password string, err error) {
	l, err := ParseMachineURL(rawURL)
	if err != nil {
		return nil, "", inputErrorf("--from takes a URL like postgres://user:password@host:5432/database")
	}
	return []string{"--format=custom", "--dbname=" + l.URL}, l.Password, nil
}

// RedactURL is rawURL without its password, to show.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(a URL that does not parse)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

var versionMismatch = regexp.MustCompile(`server version: ([0-9][0-9.a-z]*)[^;\n]*; pg_dump version: ([0-9][0-9.a-z]*)`)

// ExplainSourceDumpError says why this machine's pg_dump failed, from its stderr: an older
// pg_dump than the server is said plainly (pg_dump refuses to dump a newer server).
func ExplainSourceDumpError(stderr string) string {
	if m := versionMismatch.FindStringSubmatch(stderr); m != nil && strings.Contains(stderr, "version mismatch") {
		major := m[1]
		if i := strings.IndexByte(major, '.'); i > 0 {
			major = major[:i]
		}
		return fmt.Sprintf("the pg_dump on this machine (%s) is older than the source server (%s), and pg_dump refuses to dump a newer server: install pg_dump %s or newer (Debian and Ubuntu: postgresql-client-%s from apt.postgresql.org) and put it first in PATH", m[2], m[1], major, major)
	}
	return strings.TrimSpace(stderr)
}
