package create

import (
	"fmt"
	"testing"
	"time"

	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
)

func TestFlags(t *testing.T) {
	t.Parallel()
	for _, tty := range []bool{false, true} {
		for _, tc := range []struct {
			args                         []string
			version, storage, plan, note string
			noWait                       bool
			timeout                      time.Duration
		}{
			{[]string{"mydb"}, "17", "1Gi", "hobby", "", false, 5 * time.Minute},
			{[]string{"mydb", "--version", "15", "--storage", "10GB", "--plan", "pro", "--no-wait", "--timeout", "30s"}, "15", "10Gi", "pro", "storage: 10GB taken as 10Gi", true, 30 * time.Second},
			{[]string{"mydb", "--storage", "20G", "--wait"}, "17", "20Gi", "hobby", "storage: 20G taken as 20Gi", false, 5 * time.Minute},
		} {
			e := cmdtest.New(t, tty, nil, "")
			e.F.Config = &cmdutil.Config{DNSZone: "postgres.internal", ImageRepository: "registry.example/postgres"}
			var got *Options
			cmd := NewCmdCreate(e.F, func(o *Options) error { got = o; return nil })
			cmd.SetArgs(tc.args)
			cmd.SetOut(e.Out)
			cmd.SetErr(e.ErrOut)
			if err := cmd.Execute(); err != nil {
				t.Fatalf("%v: %v", tc.args, err)
			}
			s := got.Spec
			if s.Name != "mydb" || fmt.Sprint(s.Version) != tc.version ||
				s.Storage.String() != tc.storage || s.Plan.Name != tc.plan || got.StorageNote != tc.note ||
				got.NoWait != tc.noWait || got.Timeout != tc.timeout {
				t.Errorf("tty=%v %v: %+v", tty, tc.args, got)
			}
			if s.Image() != "registry.example/postgres:"+tc.version || s.Host() != "mydb.postgres.internal" {
				t.Errorf("image %s host %s", s.Image(), s.Host())
			}
		}
	}
}
