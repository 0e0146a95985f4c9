// Package db is the `stackblaze db` command group; each verb is its own package below.
package db

import (
	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/commands/db/attach"
	"github.com/stackblaze/stackblaze/internal/commands/db/backup"
	"github.com/stackblaze/stackblaze/internal/commands/db/connect"
	"github.com/stackblaze/stackblaze/internal/commands/db/copydb"
	"github.com/stackblaze/stackblaze/internal/commands/db/create"
	"github.com/stackblaze/stackblaze/internal/commands/db/delete"
	"github.com/stackblaze/stackblaze/internal/commands/db/detach"
	"github.com/stackblaze/stackblaze/internal/commands/db/dump"
	"github.com/stackblaze/stackblaze/internal/commands/db/importcmd"
	"github.com/stackblaze/stackblaze/internal/commands/db/insights"
	"github.com/stackblaze/stackblaze/internal/commands/db/list"
	"github.com/stackblaze/stackblaze/internal/commands/db/logs"
	"github.com/stackblaze/stackblaze/internal/commands/db/migrate"
	"github.com/stackblaze/stackblaze/internal/commands/db/proxy"
	"github.com/stackblaze/stackblaze/internal/commands/db/pull"
	"github.com/stackblaze/stackblaze/internal/commands/db/push"
	"github.com/stackblaze/stackblaze/internal/commands/db/resize"
	"github.com/stackblaze/stackblaze/internal/commands/db/restore"
	"github.com/stackblaze/stackblaze/internal/commands/db/rotatecreds"
	"github.com/stackblaze/stackblaze/internal/commands/db/run"
	"github.com/stackblaze/stackblaze/internal/commands/db/scale"
	"github.com/stackblaze/stackblaze/internal/commands/db/status"
	"github.com/stackblaze/stackblaze/internal/commands/db/update"
	"github.com/stackblaze/stackblaze/internal/commands/db/upgrade"
)

// NewCmdDB builds the db group.
func NewCmdDB(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "db <command>",
		Aliases: []string{"database", "databases"},
		Short:   "Create and manage PostgreSQL databases",
		Example: "stackblaze db create mydb --version 17 --storage 10Gi --plan standard\nstackblaze db list",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cmdutil.UsageErrorf("unknown command %q for %s", args[0], cmd.CommandPath()).
					WithHint("run `%s --help` for the commands", cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdutil.UsageErrorf("%s needs a command", cmd.CommandPath()).
				WithHint("run `%s --help` for the commands", cmd.CommandPath())
		},
	}
	cmd.AddCommand(
		create.NewCmdCreate(f, nil),
		list.NewCmdList(f, nil),
		status.NewCmdStatus(f, nil),
		logs.NewCmdLogs(f, nil),
		delete.NewCmdDelete(f, nil),
		scale.NewCmdScale(f, nil),
		migrate.NewCmdMigrate(f, nil),
		run.NewCmdRun(f, nil),
		connect.NewCmdConnect(f, nil),
		proxy.NewCmdProxy(f, nil),
		attach.NewCmdAttach(f, nil),
		detach.NewCmdDetach(f, nil),
		rotatecreds.NewCmdRotateCredentials(f, nil),
		backup.NewCmdBackup(f),
		restore.NewCmdRestore(f, nil),
		upgrade.NewCmdUpgrade(f, nil),
		resize.NewCmdResize(f, nil),
		update.NewCmdUpdate(f, nil),
		insights.NewCmdInsights(f, nil),
		dump.NewCmdDump(f, nil),
		importcmd.NewCmdImport(f, nil),
		copydb.NewCmdCopy(f, nil),
		pull.NewCmdPull(f, nil),
		push.NewCmdPush(f, nil),
	)
	return cmd
}
