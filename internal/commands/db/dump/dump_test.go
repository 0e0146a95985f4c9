package dump

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
)

// Flags: what is parsed, and what is refused (exit 2) before anything reaches the cluster (the
// Factory has no cluster: a command that built a client fails the test).
func TestFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		tty      bool
		json     bool
		args     []string
		wantCode int
		says     string
		check    func(*Options) bool
	}{
		{"defaults to a pipe", false, false, []string{"shop"}, 0, "", func(o *Options) bool {
			return o.Name == "shop" && o.File == "" && o.Dump.Compress != nil && *o.Dump.Compress == database.DefaultCompress &&
				reflect.DeepEqual(o.Dump, database.DumpOptions{Format: "custom", Compress: o.Dump.Compress})
		}},
		{"a compression level", false, false, []string{"shop", "--compress", "6"}, 0, "", func(o *Options) bool { return *o.Dump.Compress == 6 }},
		{"a level out of range", false, false, []string{"shop", "--compress", "10"}, 2, "0 (none) to 9", nil},
		{"a file on a terminal", true, false, []string{"shop", "-f", "shop.dump"}, 0, "", func(o *Options) bool { return o.File == "shop.dump" }},
		{"plain SQL to a terminal, without owners", true, false, []string{"shop", "--format", "plain", "--schema-only"}, 0, "", func(o *Options) bool {
			return o.Dump.Format == "plain" && o.Dump.SchemaOnly && o.Dump.NoOwner
		}},
		{"tables", false, false, []string{"shop", "--table", "public.orders", "-t", "customers", "--exclude-table", "audit_*"}, 0, "", func(o *Options) bool {
			return reflect.DeepEqual(o.Dump.Tables, []string{"public.orders", "customers"}) && reflect.DeepEqual(o.Dump.ExcludeTables, []string{"audit_*"}) && !o.Dump.NoOwner
		}},
		{"json with a file", false, true, []string{"shop", "-f", "x.dump"}, 0, "", nil},
		{"custom to a terminal", true, false, []string{"shop"}, cmdutil.ExitUsage, "binary", nil},
		{"custom to a terminal, -f -", true, false, []string{"shop", "-f", "-"}, cmdutil.ExitUsage, "binary", nil},
		{"json without a file", false, true, []string{"shop"}, cmdutil.ExitUsage, "-o json needs -f", nil},
		{"unknown format", false, false, []string{"shop", "--format", "tar"}, cmdutil.ExitUsage, "custom, plain", nil},
		{"empty table", false, false, []string{"shop", "--table", ""}, cmdutil.ExitUsage, "empty table", nil},
		{"bad name", false, false, []string{"Shop"}, cmdutil.ExitUsage, "", nil},
		{"no name", false, false, nil, cmdutil.ExitUsage, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := cmdtest.New(t, tc.tty, nil, "")
			if tc.json {
				e.F.IO.Configure("json", true)
			}
			var got *Options
			cmd := NewCmdDump(e.F, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(tc.args)
			cmd.SetOut(e.Out)
			cmd.SetErr(e.ErrOut)
			err := cmd.Execute()
			if code := cmdutil.ExitCode(err); code != tc.wantCode || (tc.says != "" && !strings.Contains(err.Error(), tc.says)) {
				t.Fatalf("exit %d (%v), want %d and %q", code, err, tc.wantCode, tc.says)
			}
			if tc.wantCode != 0 && got != nil {
				t.Errorf("refused, yet it ran")
			}
			if tc.check != nil && (got == nil || !tc.check(got)) {
				t.Errorf("options %+v", got)
			}
		})
	}
}
