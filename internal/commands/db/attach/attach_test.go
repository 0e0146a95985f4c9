package attach

import (
	"testing"

	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
)

func TestFlags(t *testing.T) {
	t.Parallel()
	for _, tty := range []bool{false, true} {
		for _, tc := range []struct {
			args      []string
			code      int
			workload  database.WorkloadRef
			env       string
			overwrite bool
		}{
			{[]string{"mydb", "--to", "deployment/web"}, 0, database.WorkloadRef{Kind: "Deployment", Name: "web"}, "DATABASE_URL", false},
			{[]string{"mydb", "--to", "web", "--env", "PRIMARY_URL", "--overwrite"}, 0, database.WorkloadRef{Kind: "Deployment", Name: "web"}, "PRIMARY_URL", true},
			{[]string{"mydb", "--to", "sts/queue"}, 0, database.WorkloadRef{Kind: "StatefulSet", Name: "queue"}, "DATABASE_URL", false},
			{[]string{"mydb"}, cmdutil.ExitUsage, database.WorkloadRef{}, "", false},
			{[]string{"mydb", "--to", "cronjob/x"}, cmdutil.ExitUsage, database.WorkloadRef{}, "", false},
			{[]string{"mydb", "--to", "web", "--env", "1BAD"}, cmdutil.ExitUsage, database.WorkloadRef{}, "", false},
			{[]string{"--to", "web"}, cmdutil.ExitUsage, database.WorkloadRef{}, "", false},
		} {
			e := cmdtest.New(t, tty, nil, "")
			var got *Options
			cmd := NewCmdAttach(e.F, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(tc.args)
			cmd.SetOut(e.Out)
			cmd.SetErr(e.ErrOut)
			err := cmd.Execute()
			if code := cmdutil.ExitCode(err); code != tc.code {
				t.Fatalf("tty=%v %v: exit %d (%v), want %d", tty, tc.args, code, err, tc.code)
			}
			if tc.code == 0 && (got.Workload != tc.workload || got.Env != tc.env || got.Overwrite != tc.overwrite) {
				t.Errorf("tty=%v %v: %+v", tty, tc.args, got)
			}
		}
	}
}
