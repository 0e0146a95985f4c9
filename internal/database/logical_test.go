package database

import (
	"bytes"
	"errors"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func TestDumpArgv(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    DumpOptions
		want []string
	}{
		{"default is custom, gzip level 1", DumpOptions{}, []string{"pg_dump", "--dbname=shop", "--format=custom", "--compress=1"}},
		{"a level", DumpOptions{Compress: ptrTo(9)}, []string{"pg_dump", "--dbname=shop", "--format=custom", "--compress=9"}},
		{"plain has no level", DumpOptions{Format: FormatPlain, Compress: ptrTo(9)}, []string{"pg_dump", "--dbname=shop", "--format=plain"}},
		{"plain without owners", DumpOptions{Format: FormatPlain, NoOwner: true},
			[]string{"pg_dump", "--dbname=shop", "--format=plain", "--no-owner", "--no-privileges"}},
		{"plain clean", DumpOptions{Format: FormatPlain, Clean: true},
			[]string{"pg_dump", "--dbname=shop", "--format=plain", "--clean", "--if-exists"}},
		{"clean is plain's only", DumpOptions{Format: FormatCustom, Clean: true},
			[]string{"pg_dump", "--dbname=shop", "--format=custom", "--compress=1"}},
		{"schema, tables, exclusions", DumpOptions{SchemaOnly: true, Tables: []string{"public.orders", "audit_*"}, ExcludeTables: []string{"big log"}},
			[]string{"pg_dump", "--dbname=shop", "--format=custom", "--compress=1", "--schema-only", "--strict-names", "--table=public.orders", "--table=audit_*", "--exclude-table=big log"}},
		{"exclusions alone are not strict", DumpOptions{ExcludeTables: []string{"x"}},
			[]string{"pg_dump", "--dbname=shop", "--format=custom", "--compress=1", "--exclude-table=x"}},
	} {
		if got := DumpArgv("shop", tc.o); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestValidateDumpOptions(t *testing.T) {
	o, err := ValidateDumpOptions(DumpOptions{})
	if err != nil || o.Format != FormatCustom {
		t.Errorf("default: %+v, %v", o, err)
	}
	for _, bad := range []DumpOptions{
		{Format: "tar"}, {Format: "directory"}, {Tables: []string{""}}, {ExcludeTables: []string{"  "}}, {Tables: []string{"--clean"}},
	} {
		var ie *InputError
		if _, err := ValidateDumpOptions(bad); !errors.As(err, &ie) {
			t.Errorf("%+v: %v, want an *InputError", bad, err)
		}
	}
}

func TestSniffFormat(t *testing.T) {
	tar := make([]byte, 512)
	copy(tar, "toc.dat")
	copy(tar[257:], "ustar")
	for _, tc := range []struct {
		name, head, format, says string
	}{
		{"custom", "PGDMP\x01\x0e\x00\x04\x08\x01\x01", FormatCustom, ""},
		{"plain", "--\n-- PostgreSQL database dump\n--\n\n\\restrict abc\n", FormatPlain, ""},
		{"plain, CRLF", "--\r\n-- PostgreSQL database dump\r\n", FormatPlain, ""},
		{"empty", "", "", "empty"},
		{"random", "\x8f\x01\xfe random bytes that are no dump at all", "", "not a PostgreSQL dump"},
		{"SQL without the header", "create table t (n int);\n", "", "not a PostgreSQL dump"},
		{"gzip", "\x1f\x8b\x08\x00", "", "gzip"},
		{"pg_dumpall", "--\n-- PostgreSQL database cluster dump\n--\n", "", "pg_dumpall"},
		{"tar", string(tar), "", "tar"},
		{"a footer is no header", "--\n-- PostgreSQL database dump complete\n--\n", "", "not a PostgreSQL dump"},
		{"too short for the header", "--\n-- Postgre", "", "not a PostgreSQL dump"},
	} {
		got, err := SniffFormat([]byte(tc.head))
		var ie *InputError
		switch {
		case tc.format != "" && (err != nil || got != tc.format):
			t.Errorf("%s: %q, %v; want %s", tc.name, got, err, tc.format)
		case tc.format == "" && (!errors.As(err, &ie) || !strings.Contains(err.Error(), tc.says)):
			t.Errorf("%s: %q, %v; want an *InputError that says %q", tc.name, got, err, tc.says)
		}
	}
}

// The restore runs bash with the script and its values as arguments: no password, the database
// and role as given, clean only when asked.
func TestRestoreArgv(t *testing.T) {
	got := RestoreArgv("shop", "shop", FormatCustom, false)
	if !reflect.DeepEqual(got, []string{"bash", "-c", restoreScript, "restore", "shop", "shop", "custom", "", restoreFilter}) {
		t.Errorf("argv %q", got)
	}
	got = RestoreArgv("my_db", "my_db", FormatPlain, true)
	if !reflect.DeepEqual(got[3:], []string{"restore", "my_db", "my_db", "plain", "clean", restoreFilter}) {
		t.Errorf("argv %q", got[3:])
	}
	for _, want := range []string{"set -o pipefail", "BEGIN;", `SET ROLE "%s"`, `DROP OWNED BY "%s"`, "pg_restore --no-owner --no-privileges --file=-", "COMMIT;", "ON_ERROR_STOP=1"} {
		if !strings.Contains(restoreScript, want) {
			t.Errorf("the restore script lacks %q", want)
		}
	}
	// COMMIT only after the dump went through the filter whole.
	if !strings.Contains(restoreScript, `"$filter" && printf 'COMMIT;\n'`) {
		t.Error("COMMIT does not depend on the dump's end")
	}
}

// The filter (the same awk program the pod runs) passes COPY data untouched, drops what the
// application role may not run, and fails when the dump has no footer.
func TestRestoreFilter(t *testing.T) {
	awk, err := exec.LookPath("awk")
	if err != nil {
		t.Fatal("awk is missing")
	}
	run := func(format, in string) (string, error) {
		var out, stderr bytes.Buffer
		cmd := exec.Command(awk, "-v", "format="+format, restoreFilter)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(in), &out, &stderr
		err := cmd.Run()
		if err != nil {
			err = errors.New(err.Error() + ": " + stderr.String())
		}
		return out.String(), err
	}
	dump := `--
-- PostgreSQL database dump
--
SET ROLE alice;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public;
COMMENT ON EXTENSION pg_stat_statements IS 'track statistics';
CREATE TABLE public.t (n integer, s text);
ALTER TABLE public.t OWNER TO alice;
COPY public.t (n, s) FROM stdin;
1	GRANT ALL ON x TO y;
2	COMMENT ON EXTENSION x IS 'y';
\.
GRANT SELECT ON TABLE public.t TO bob;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE alice GRANT ALL ON TABLES TO bob;
CREATE FUNCTION public.f() RETURNS integer
    LANGUAGE sql
    AS $$ select 1 $$;
ALTER FUNCTION public.f() OWNER TO alice;
\connect other
--
-- PostgreSQL database dump complete
--
`
	out, err := run(FormatPlain, dump)
	if err != nil {
		t.Fatal(err)
	}
	for _, kept := range []string{"CREATE EXTENSION IF NOT EXISTS", "CREATE TABLE public.t", "1\tGRANT ALL ON x TO y;", "2\tCOMMENT ON EXTENSION x IS 'y';", "\\.\n", "AS $$ select 1 $$;", "dump complete"} {
		if !strings.Contains(out, kept) {
			t.Errorf("plain: %q was dropped:\n%s", kept, out)
		}
	}
	for _, gone := range []string{"SET ROLE alice", "COMMENT ON EXTENSION pg_stat", "OWNER TO", "GRANT SELECT", "REVOKE ALL", "ALTER DEFAULT", "\\connect"} {
		if strings.Contains(out, gone) {
			t.Errorf("plain: %q was kept:\n%s", gone, out)
		}
	}
	// pg_restore's script: only the extension's comment goes (pg_restore left the rest out).
	out, err = run(FormatCustom, dump)
	if err != nil || strings.Contains(out, "COMMENT ON EXTENSION pg_stat") || !strings.Contains(out, "OWNER TO alice") {
		t.Errorf("custom: %v\n%s", err, out)
	}
	// Cut in the middle: no footer, a failure.
	if _, err := run(FormatPlain, dump[:strings.Index(dump, "\\.")]); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("a truncated dump passed the filter: %v", err)
	}
	// A footer inside COPY data is data, not the end.
	cut := "--\n-- PostgreSQL database dump\n--\nCOPY public.t (s) FROM stdin;\n-- PostgreSQL database dump complete\n"
	if _, err := run(FormatPlain, cut); err == nil {
		t.Error("a footer in COPY data ended the dump")
	}
}

func TestSourceDumpArgs(t *testing.T) {
	for _, tc := range []struct {
		url, pw, dbname string
	}{
		{"postgres://dev:s3cr%40t@127.0.0.1:5433/app", "s3cr@t", "--dbname=postgres://dev@127.0.0.1:5433/app"},
		{"postgresql://dev@db.example.com/app?sslmode=require", "", "--dbname=postgresql://dev@db.example.com/app?sslmode=require"},
		{"postgres://dev@h/app?password=hunter2&sslmode=disable", "hunter2", "--dbname=postgres://dev@h/app?sslmode=disable"},
	} {
		args, pw, err := SourceDumpArgs(tc.url)
		if err != nil || pw != tc.pw || !reflect.DeepEqual(args, []string{"--format=custom", tc.dbname}) {
			t.Errorf("%s: %q %q %v", tc.url, args, pw, err)
		}
		for _, a := range args {
			if tc.pw != "" && strings.Contains(a, tc.pw) {
				t.Errorf("%s: the password is in the arguments: %q", tc.url, args)
			}
		}
		if r := RedactURL(tc.url); tc.pw != "" && strings.Contains(r, tc.pw) {
			t.Errorf("RedactURL(%s) = %s", tc.url, r)
		}
	}
	for _, bad := range []string{"host=h dbname=app password=x", "mysql://u:p@h/db", "::"} {
		var ie *InputError
		if _, _, err := SourceDumpArgs(bad); !errors.As(err, &ie) || strings.Contains(err.Error(), "password=x") {
			t.Errorf("%s: %v, want an *InputError without the input", bad, err)
		}
	}
}

func TestExplainSourceDumpError(t *testing.T) {
	got := ExplainSourceDumpError("pg_dump: error: aborting because of server version mismatch\npg_dump: detail: server version: 17.2 (Debian 17.2-1); pg_dump version: 15.10 (Debian 15.10-0+deb12u1)\n")
	for _, want := range []string{"older than the source server", "15.10", "17.2", "pg_dump 17 or newer", "postgresql-client-17"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if got := ExplainSourceDumpError("pg_dump: error: connection to server failed\n"); got != "pg_dump: error: connection to server failed" {
		t.Errorf("other errors pass through: %q", got)
	}
}

func TestNotEmptyErrorIsInput(t *testing.T) {
	var ie *InputError
	err := error(&NotEmptyError{Name: "shop", Objects: 3})
	if !errors.As(err, &ie) || !strings.Contains(ie.Msg, "--clean") {
		t.Errorf("%v", err)
	}
}

// A command wrapped by OnceArgv runs with the rest of its input after the nonce's line and
// reports its exit status on stderr (exiting 0), and does not run on input without the line
// (what a second run of kube.Exec's fallback gets).
func TestOnceArgv(t *testing.T) {
	run := func(nonce, in, script string) (string, string, error) {
		argv := OnceArgv(nonce, []string{"sh", "-c", script, "sh", "arg one"})
		cmd := exec.Command(argv[0], argv[1:]...)
		var stderr bytes.Buffer
		cmd.Stdin, cmd.Stderr = strings.NewReader(in), &stderr
		out, err := cmd.Output()
		return string(out), stderr.String(), err
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(onceInput("n0nce", strings.NewReader("PGDMP rest\nof it"))); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := run("n0nce", b.String(), `printf '%s|' "$1"; cat`)
	if rest, status, ok := parseExitStatus(stderr); err != nil || out != "arg one|PGDMP rest\nof it" || !ok || status != 0 || rest != "" {
		t.Errorf("the first run: %q, %q, %v", out, stderr, err)
	}
	_, stderr, err = run("n0nce", b.String(), `echo "pg_restore: error: it broke" >&2; exit 3`)
	if rest, status, ok := parseExitStatus(stderr); err != nil || !ok || status != 3 || rest != "pg_restore: error: it broke" {
		t.Errorf("a failing command: %q %v; status %d %v, rest %q", stderr, err, status, ok, rest)
	}
	for _, in := range []string{"", "PGDMP rest\nof it", "once other\nPGDMP", "once n0nc"} {
		var ee *exec.ExitError
		if out, stderr, err := run("n0nce", in, "cat"); !errors.As(err, &ee) || ee.ExitCode() != 97 || out != "" || stderr != "" {
			t.Errorf("input %q: %q, %q, %v; want exit 97 and nothing run", in, out, stderr, err)
		}
	}
}

func TestParseExitStatus(t *testing.T) {
	for _, tc := range []struct {
		in, rest string
		status   int
		ok       bool
	}{
		{"", "", 0, false},
		{"\nstackblaze-exit 0\n", "", 0, true},
		{"pg_dump: error: no matching tables\n\nstackblaze-exit 1\n", "pg_dump: error: no matching tables", 1, true},
		{"no newline at the end\nstackblaze-exit 3\n", "no newline at the end", 3, true},
		{"killed before the status", "killed before the status", 0, false},
	} {
		rest, status, ok := parseExitStatus(tc.in)
		if rest != tc.rest || status != tc.status || ok != tc.ok {
			t.Errorf("%q: %q %d %v", tc.in, rest, status, ok)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
