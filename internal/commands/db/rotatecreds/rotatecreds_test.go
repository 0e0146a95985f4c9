package rotatecreds

import (
	"testing"
	"time"

	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
)

func TestFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		tty, ci  bool
		json     bool
		args     []string
		wantCode int
		check    func(*Options) bool
	}{
		{"defaults on a terminal", true, false, false, []string{"mydb"}, 0, func(o *Options) bool {
			return o.Name == "mydb" && o.Grace == 0 && o.Wait && !o.Yes && o.Timeout == 10*time.Minute && o.LeaseDuration == 15*time.Second
		}},
		{"grace, no wait, yes", false, true, false, []string{"mydb", "--grace", "5m", "--wait=false", "--yes"}, 0, func(o *Options) bool {
			return o.Grace == 5*time.Minute && !o.Wait && o.Yes
		}},
		{"show password with json", false, false, true, []string{"mydb", "--yes", "--show-password"}, 0, func(o *Options) bool { return o.ShowPassword }},
		{"CI without --yes refuses", false, true, false, []string{"mydb"}, cmdutil.ExitUsage, nil},
		{"CI is set even on a terminal", true, true, false, []string{"mydb"}, cmdutil.ExitUsage, nil},
		{"no terminal without --yes refuses", false, false, false, []string{"mydb"}, cmdutil.ExitUsage, nil},
		{"show password needs json", true, false, false, []string{"mydb", "--yes", "--show-password"}, cmdutil.ExitUsage, nil},
		{"negative grace", true, false, false, []string{"mydb", "--grace", "-1s"}, cmdutil.ExitUsage, nil},
		{"short lease", true, false, false, []string{"mydb", "--lease-duration", "1s"}, cmdutil.ExitUsage, nil},
		{"bad name", true, false, false, []string{"My_DB"}, cmdutil.ExitUsage, nil},
		{"missing name", true, false, false, nil, cmdutil.ExitUsage, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := cmdtest.New(t, tc.tty, nil, "")
			if tc.ci {
				e.Vars["CI"] = "true"
			}
			if tc.json {
				e.F.IO.Configure("json", true)
			}
			var got *Options
			cmd := NewCmdRotateCredentials(e.F, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(tc.args)
			cmd.SetOut(e.Out)
			cmd.SetErr(e.ErrOut)
			err := cmd.Execute()
			if code := cmdutil.ExitCode(err); code != tc.wantCode {
				t.Fatalf("exit %d (%v), want %d", code, err, tc.wantCode)
			}
			if tc.check != nil && (got == nil || !tc.check(got)) {
				t.Errorf("options %+v", got)
			}
		})
	}
}
