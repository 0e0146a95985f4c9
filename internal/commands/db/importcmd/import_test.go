package importcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
)

// Flags: what is parsed, and what is refused (exit 2) before anything reaches the cluster.
func TestFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		tty, ci  bool
		args     []string
		wantCode int
		says     string
		check    func(*Options) bool
	}{
		{"a file", false, false, []string{"shop", "--file", "x.dump"}, 0, "", func(o *Options) bool {
			return o.Name == "shop" && o.File == "x.dump" && o.From == "" && !o.Clean && !o.Yes
		}},
		{"stdin", false, false, []string{"shop", "-f", "-"}, 0, "", func(o *Options) bool { return o.File == "-" }},
		{"a URL", false, false, []string{"shop", "--from", "postgres://u:p@localhost:5432/app"}, 0, "", func(o *Options) bool { return o.From != "" }},
		{"clean on a terminal asks later", true, false, []string{"shop", "-f", "x.dump", "--clean"}, 0, "", func(o *Options) bool { return o.Clean && !o.Yes }},
		{"clean with --yes in CI", false, true, []string{"shop", "-f", "x.dump", "--clean", "--yes"}, 0, "", func(o *Options) bool { return o.Clean && o.Yes }},
		{"clean in CI without --yes", false, true, []string{"shop", "-f", "x.dump", "--clean"}, cmdutil.ExitUsage, "CI is set", nil},
		{"clean without a terminal", false, false, []string{"shop", "-f", "x.dump", "--clean"}, cmdutil.ExitUsage, "stdin is not a terminal", nil},
		{"neither", false, false, []string{"shop"}, cmdutil.ExitUsage, "--file FILE", nil},
		{"both", false, false, []string{"shop", "-f", "x", "--from", "postgres://h/d"}, cmdutil.ExitUsage, "one at a time", nil},
		{"not a URL", false, false, []string{"shop", "--from", "host=h password=secret"}, cmdutil.ExitUsage, "postgres://", nil},
		{"stdin is a terminal", true, false, []string{"shop", "-f", "-"}, cmdutil.ExitUsage, "stdin is a terminal", nil},
		{"bad name", false, false, []string{"Shop", "-f", "x"}, cmdutil.ExitUsage, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := cmdtest.New(t, tc.tty, nil, "")
			if tc.ci {
				e.Vars["CI"] = "true"
			}
			var got *Options
			cmd := NewCmdImport(e.F, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(tc.args)
			cmd.SetOut(e.Out)
			cmd.SetErr(e.ErrOut)
			err := cmd.Execute()
			if code := cmdutil.ExitCode(err); code != tc.wantCode || (tc.says != "" && !strings.Contains(err.Error(), tc.says)) {
				t.Fatalf("exit %d (%v), want %d and %q", code, err, tc.wantCode, tc.says)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the password: %v", err)
			}
			if tc.check != nil && (got == nil || !tc.check(got)) {
				t.Errorf("options %+v", got)
			}
		})
	}
}

// A file that is not a dump, or that cannot be read, is refused with exit 2 before a client is
// built (the Factory has no cluster: building one fails the test).
func TestNotADump(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct{ file, says string }{
		{write("random.bin", "\x00\x01\x02 not a dump at all"), "not a PostgreSQL dump"},
		{write("empty", ""), "empty"},
		{write("schema.sql", "create table t (n int);\n"), "not a PostgreSQL dump"},
		{write("dump.gz", "\x1f\x8b\x08\x00rest"), "gzip"},
		{filepath.Join(dir, "missing.dump"), "cannot read the dump"},
	} {
		e := cmdtest.New(t, false, nil, "")
		cmd := NewCmdImport(e.F, nil)
		cmd.SetArgs([]string{"shop", "--file", tc.file})
		cmd.SetOut(e.Out)
		cmd.SetErr(e.ErrOut)
		err := cmd.Execute()
		if cmdutil.ExitCode(err) != cmdutil.ExitUsage || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want exit 2 and %q", tc.file, err, tc.says)
		}
	}
}
