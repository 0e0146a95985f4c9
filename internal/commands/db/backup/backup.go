// Package backup is `stackblaze db backup create|list|schedule`: pgBackRest backups taken and
// listed by running pgbackrest in the database's pod (pods/exec), and the daily CronJob.
package backup

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	bk "github.com/stackblaze/stackblaze/internal/backup"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// NewCmdBackup builds the backup group.
func NewCmdBackup(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup <command>",
		Short: "Take, list and schedule backups (pgBackRest)",
		Example: "stackblaze db backup create mydb\nstackblaze db backup list mydb -o json\n" +
			"stackblaze db backup schedule mydb --at 02:30",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmdutil.UsageErrorf("%s needs a command", cmd.CommandPath()).
				WithHint("run `%s --help` for the commands", cmd.CommandPath())
		},
	}
	cmd.AddCommand(NewCmdCreate(f, nil), NewCmdList(f, nil), NewCmdSchedule(f, nil))
	return cmd
}

// Options are the inputs of the backup commands.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name  string
	Type  string
	At    string
	Image string
}

// CreateResult is what backup create prints.
type CreateResult struct {
	Database string    `json:"database"`
	Backup   bk.Backup `json:"backup"`
	Duration float64   `json:"durationSeconds"`
}

// NewCmdCreate builds `db backup create`.
func NewCmdCreate(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:               "create NAME",
		Short:             "Take a backup now and wait for it",
		Example:           "stackblaze db backup create mydb\nstackblaze db backup create mydb --type diff -o json",
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if opts.Type != bk.TypeFull && opts.Type != bk.TypeDiff {
				return cmdutil.UsageErrorf("--type %q is not a backup type: use full or diff", opts.Type)
			}
			if runF != nil {
				return runF(opts)
			}
			return runCreate(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Type, "type", bk.TypeFull, "full, or diff (the changes since the last full backup)")
	return cmd
}

func resolve(ctx context.Context, kc func() (*kube.Client, error), name string) (*database.Backups, error) {
	c, err := kc()
	if err != nil {
		return nil, err
	}
	t, err := database.OpenBackups(ctx, c, name)
	return t, cmdutil.KubeError(err, cmdutil.ScopeOf(c, name))
}

func runCreate(ctx context.Context, o *Options) error {
	t, err := resolve(ctx, o.Kube, o.Name)
	if err != nil {
		return err
	}
	prog := o.IO.NewProgress(o.Now)
	start := o.Now()
	prog.Start("Backing up %s (%s)", o.Name, o.Type)
	b, err := t.Take(ctx, o.Type)
	prog.Stop()
	if err != nil {
		return cmdutil.KubeError(err, cmdutil.ScopeOf(t.Client, o.Name))
	}
	res := CreateResult{Database: o.Name, Backup: b, Duration: o.Now().Sub(start).Seconds()}
	prog.Done("Backup %s taken", b.ID)
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	fmt.Fprintf(o.IO.Out, "ID:        %s\nType:      %s\nSize:      %s (%s in the repository)\nDuration:  %s\n",
		b.ID, b.Type, output.HumanBytes(b.Size), output.HumanBytes(b.RepoSize), (time.Duration(res.Duration*1000) * time.Millisecond).String())
	return nil
}

// NewCmdList builds `db backup list`.
func NewCmdList(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	return &cobra.Command{
		Use:               "list NAME",
		Short:             "List backups and the recoverable window",
		Example:           "stackblaze db backup list mydb\nstackblaze db backup list mydb -o json",
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runList(cmd.Context(), opts)
		},
	}
}

func runList(ctx context.Context, o *Options) error {
	t, err := resolve(ctx, o.Kube, o.Name)
	if err != nil {
		return err
	}
	res, _, err := t.List(ctx)
	if err != nil {
		return cmdutil.KubeError(err, cmdutil.ScopeOf(t.Client, o.Name))
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	rows := make([][]string, 0, len(res.Backups))
	other := false
	for _, b := range res.Backups {
		pg := b.PostgresVersion
		if !b.Current {
			pg += " *"
			other = true
		}
		rows = append(rows, []string{b.ID, b.Type, pg, b.Start.Format(time.RFC3339), b.Stop.Format(time.RFC3339), output.HumanBytes(b.Size)})
	}
	if len(rows) == 0 {
		fmt.Fprintf(o.IO.ErrOut, "No backups of %s yet: take one with `stackblaze db backup create %s`\n", o.Name, o.Name)
	} else if err := output.Table(o.IO.Out, []string{"ID", "TYPE", "POSTGRES", "START", "STOP", "SIZE"}, rows); err != nil {
		return err
	}
	if other {
		fmt.Fprintf(o.IO.Out, "* of a cluster the database no longer runs (a major version upgrade lies between): `db restore` does not restore it\n")
	}
	if u := res.Upgrade; u != nil && !u.Stopped.IsZero() {
		fmt.Fprintf(o.IO.Out, "\nUpgraded from PostgreSQL %d to %d at %s", u.From, u.To, u.Stopped.UTC().Format(time.RFC3339))
		switch u.Phase {
		case database.UpgradeReverted:
			fmt.Fprintf(o.IO.Out, "; reverted at %s: it runs %d again\n", u.Reverted.UTC().Format(time.RFC3339), u.From)
		case database.UpgradeDone:
			fmt.Fprintf(o.IO.Out, "; `stackblaze db upgrade %s --revert` goes back to %d from backup %s until --finish\n", o.Name, u.From, u.Backup)
		case database.UpgradeFinished:
			fmt.Fprintf(o.IO.Out, "; finished at %s\n", u.Finished.UTC().Format(time.RFC3339))
		default:
			fmt.Fprintf(o.IO.Out, "; not finished (last step: %s): run `stackblaze db upgrade %s --version %d` again\n", u.Phase, o.Name, u.To)
		}
	}
	switch {
	case res.Window != nil:
		fmt.Fprintf(o.IO.Out, "\nRecoverable window (point-in-time): %s\n", res.Window)
	case !res.PITR:
		fmt.Fprintf(o.IO.Out, "\nPoint-in-time recovery: not on plan %s (restore a backup by ID)\n", res.Plan)
	}
	return nil
}

// NewCmdSchedule builds `db backup schedule`.
func NewCmdSchedule(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "schedule NAME --at HH:MM",
		Short: "Set the time of the daily backup (a CronJob in the namespace)",
		Long: `Set the time (UTC) of the daily backup. The backup runs inside the cluster: a CronJob
NAME-backup runs the stackblaze image's "db backup create NAME" under a ServiceAccount
NAME-backup that may only read the database's StatefulSet and exec into its pod.`,
		Example:           "stackblaze db backup schedule mydb --at 02:30",
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if _, err := database.ParseAt(opts.At); err != nil {
				return cmdutil.KubeError(err, cmdutil.Scope{})
			}
			if opts.Image == "" {
				opts.Image = database.BackupImage(f.Version.Version)
			}
			if runF != nil {
				return runF(opts)
			}
			return runSchedule(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.At, "at", database.DefaultBackupAt, "time of day, HH:MM in UTC")
	cmd.Flags().StringVar(&opts.Image, "image", "", "the stackblaze image the job runs (default stackblaze/stackblaze:<this version>)")
	return cmd
}

// ScheduleResult is what schedule prints.
type ScheduleResult struct {
	Database       string `json:"database"`
	CronJob        string `json:"cronJob"`
	Schedule       string `json:"schedule"`
	TimeZone       string `json:"timeZone"`
	Image          string `json:"image"`
	ServiceAccount string `json:"serviceAccount"`
}

func runSchedule(ctx context.Context, o *Options) error {
	t, err := resolve(ctx, o.Kube, o.Name)
	if err != nil {
		return err
	}
	sched, _ := database.ParseAt(o.At)
	found, err := database.Guard(ctx, t.Client.Clientset, t.Client.Namespace, o.Name, database.BackupScheduleObjects(o.Name))
	if err != nil {
		return cmdutil.KubeError(err, cmdutil.ScopeOf(t.Client, o.Name))
	}
	if _, err := database.ApplyBackupSchedule(ctx, t.Client.Clientset, t.Client.Namespace, o.Name, database.BackupSchedule{Cron: sched, Image: o.Image}, found); err != nil {
		return cmdutil.KubeError(err, cmdutil.ScopeOf(t.Client, o.Name))
	}
	res := ScheduleResult{Database: o.Name, CronJob: database.BackupScheduleName(o.Name), Schedule: sched, TimeZone: database.BackupTimeZone, Image: o.Image, ServiceAccount: database.BackupScheduleName(o.Name)}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	fmt.Fprintf(o.IO.Out, "Daily backup of %s at %s UTC (CronJob %s, image %s)\n", o.Name, o.At, res.CronJob, o.Image)
	return nil
}
