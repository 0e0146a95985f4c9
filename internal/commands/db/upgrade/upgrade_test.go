package upgrade

import (
	"strings"
	"testing"
	"time"

	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
)

// Bad input is refused with exit 2 and what is allowed, before any contact with the cluster (the
// run function is never reached).
func TestFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		tty, ci  bool
		args     []string
		wantCode int
		wantErr  string
		check    func(*Options) bool
	}{
		{"check needs no confirmation", false, true, []string{"mydb", "--version", "17", "--check"}, 0, "", func(o *Options) bool {
			return o.Check && o.Version == "17" && o.Timeout == 10*time.Minute && o.LeaseDuration == 15*time.Second
		}},
		{"upgrade with --yes in CI", false, true, []string{"mydb", "--version", "17", "--yes"}, 0, "", func(o *Options) bool { return o.Yes && !o.Check }},
		{"finish needs no confirmation", false, true, []string{"mydb", "--finish"}, 0, "", func(o *Options) bool { return o.Finish }},
		{"revert with --yes", false, true, []string{"mydb", "--revert", "--yes"}, 0, "", func(o *Options) bool { return o.Revert }},
		{"upgrade in CI without --yes", false, true, []string{"mydb", "--version", "17"}, cmdutil.ExitUsage, "--yes", nil},
		{"revert in CI without --yes", false, true, []string{"mydb", "--revert"}, cmdutil.ExitUsage, "--yes", nil},
		{"nothing to do", true, false, []string{"mydb"}, cmdutil.ExitUsage, "--version N", nil},
		{"two things to do", true, false, []string{"mydb", "--version", "17", "--revert"}, cmdutil.ExitUsage, "--version N", nil},
		{"check without a version", true, false, []string{"mydb", "--check"}, cmdutil.ExitUsage, "--version N", nil},
		{"an unsupported major", true, false, []string{"mydb", "--version", "14", "--check"}, cmdutil.ExitUsage, "15, 16, 17 or 18", nil},
		{"not a major", true, false, []string{"mydb", "--version", "17.2"}, cmdutil.ExitUsage, "15, 16, 17 or 18", nil},
		{"short lease", true, false, []string{"mydb", "--finish", "--lease-duration", "1s"}, cmdutil.ExitUsage, "lease", nil},
		{"bad name", true, false, []string{"My_DB", "--finish"}, cmdutil.ExitUsage, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := cmdtest.New(t, tc.tty, nil, "")
			if tc.ci {
				e.Vars["CI"] = "true"
			}
			var got *Options
			cmd := NewCmdUpgrade(e.F, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(tc.args)
			cmd.SetOut(e.Out)
			cmd.SetErr(e.ErrOut)
			err := cmd.Execute()
			if code := cmdutil.ExitCode(err); code != tc.wantCode {
				t.Fatalf("exit %d (%v), want %d", code, err, tc.wantCode)
			}
			if tc.wantErr != "" {
				var hint string
				if ce, ok := err.(*cmdutil.Error); ok {
					hint = ce.Hint
				}
				if !strings.Contains(err.Error()+hint, tc.wantErr) {
					t.Errorf("error %q (hint %q) does not say %q", err, hint, tc.wantErr)
				}
			}
			if tc.wantCode != 0 && got != nil {
				t.Error("the command ran despite the bad input")
			}
			if tc.check != nil && (got == nil || !tc.check(got)) {
				t.Errorf("options %+v", got)
			}
		})
	}
}
