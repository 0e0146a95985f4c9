// Package restore is `stackblaze db restore NAME --backup ID | --to-time T`: pgBackRest restores
// into a directory beside PGDATA while the database keeps running, then a swap and a restart.
package restore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	bk "github.com/stackblaze/stackblaze/internal/backup"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/pg"
)

// Options are the inputs of restore.
type Options struct {
	IO         *output.IOStreams
	Kube       func() (*kube.Client, error)
	OpenTunnel cmdutil.TunnelOpener
	CheckLogin func(context.Context, pg.Login) error
	Now        func() time.Time

	// For the new database of --into, as create takes them.
	DNSZone, ImageRepository, BackupImage string
	S3                                    *database.S3Settings

	Name    string
	Backup  string
	ToTime  string
	Into    string
	Yes     bool
	Timeout time.Duration
}

// NewCmdRestore builds the command.
func NewCmdRestore(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, OpenTunnel: f.OpenTunnel, CheckLogin: f.CheckLogin, Now: f.Now,
		BackupImage: database.BackupImage(f.Version.Version)}
	cmd := &cobra.Command{
		Use:   "restore NAME (--backup ID | --to-time T) [--into NEW_NAME]",
		Short: "Restore a database from a backup or to a point in time",
		Long: `Restore a database from one of its backups (--backup ID, see "db backup list") or, on
plans with point-in-time recovery, to a time (--to-time, RFC3339 or a duration before now such
as 2h).

With --into NEW_NAME the restore goes into a new database, with the source's version, storage
and plan and credentials of its own; the source keeps running and is only read. If the restore
fails, the new database is deleted again and the command can be retried as it is.

Without --into the database is restored in place: it asks first (--yes in CI), takes a safety
backup, restores beside the running data, then restarts the database on the restored data; if
anything fails before the restart the database keeps running untouched.`,
		Example: "stackblaze db restore mydb --backup 20261124-030000F --into mydb-copy\n" +
			"stackblaze db restore mydb --backup 20261124-030000F --yes\n" +
			"stackblaze db restore mydb --to-time 2026-11-24T10:15:00Z\nstackblaze db restore mydb --to-time 2h --yes",
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if (opts.Backup == "") == (opts.ToTime == "") {
				return cmdutil.UsageErrorf("say what to restore: --backup ID or --to-time T, not both").
					WithHint("list the backups and the recoverable window with `stackblaze db backup list %s`", opts.Name)
			}
			if opts.ToTime != "" {
				if _, err := bk.ParseTarget(opts.ToTime, opts.Now()); err != nil {
					return cmdutil.UsageErrorf("%v", err)
				}
			}
			if opts.Into != "" {
				if err := database.ValidateName(opts.Into); err != nil {
					return cmdutil.KubeError(err, cmdutil.Scope{})
				}
				if opts.Into == opts.Name {
					return cmdutil.UsageErrorf("--into names the database itself").
						WithHint("leave out --into to restore %s in place, or give a new name", opts.Name)
				}
			}
			opts.Yes = cmdutil.AssumeYes(f, opts.Yes)
			if f.Config != nil {
				opts.DNSZone = f.Config.DNSZone
				opts.ImageRepository = f.Config.ImageRepository
				opts.S3 = f.Config.BackupS3()
			}
			if opts.Into == "" {
				if err := confirmation(opts.Name).Refuse(opts.IO, opts.Yes); err != nil {
					return err
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Backup, "backup", "", "ID of the backup to restore (see `db backup list`)")
	_ = cmd.RegisterFlagCompletionFunc("backup", completeBackupIDs(f))
	cmd.Flags().StringVar(&opts.ToTime, "to-time", "", "time to recover to: RFC3339, or a duration before now (2h, 30m, 1d)")
	cmd.Flags().StringVar(&opts.Into, "into", "", "restore into a new database of this name (the source keeps running)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "restore in place without asking")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 10*time.Minute, "how long to wait for the restored database (in place) or the new one (--into) to be up")
	return cmd
}

// confirmation is what restoring in place needs (--into only reads the source).
func confirmation(name string) cmdutil.Confirmation {
	return cmdutil.Confirmation{
		Action:   "restore database " + name + " in place",
		Hint:     "add --yes to restore it (a safety backup is taken first)",
		Declined: "restore cancelled",
	}
}

// Result is what restore prints.
type Result struct {
	Database     string    `json:"database"`
	Into         string    `json:"into,omitempty"`
	Backup       string    `json:"backup,omitempty"`
	Target       time.Time `json:"targetTime,omitzero"`
	SafetyBackup string    `json:"safetyBackup,omitempty"`
	Duration     float64   `json:"durationSeconds"`
}

// point is what was restored: the backup's ID, or the time.
func (r Result) point() string {
	if r.Backup != "" {
		return r.Backup
	}
	return r.Target.Format(time.RFC3339)
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	t, err := database.OpenBackups(ctx, c, o.Name)
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	prog := o.IO.NewProgress(o.Now)
	start := o.Now()
	list, repo, err := t.List(ctx)
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	res := Result{Database: o.Name}
	var restore []string
	if o.Backup != "" {
		if _, ok := repo.Find(o.Backup); !ok {
			valid := "none yet: take one with `stackblaze db backup create " + o.Name + "`"
			if len(repo.Backups) > 0 {
				valid = strings.Join(repo.IDs(), ", ")
			}
			return cmdutil.Errorf(cmdutil.ExitNotFound, "database %s has no backup %q", o.Name, o.Backup).
				WithHint("the backups are: %s", valid)
		}
		if b, _ := repo.Find(o.Backup); !b.Current {
			return cmdutil.UsageErrorf("backup %s is of PostgreSQL %s, a cluster %s no longer runs (a major version upgrade lies between): it cannot be restored onto the database as it runs now", o.Backup, b.PostgresVersion, o.Name).
				WithHint("%s", beforeUpgradeHint(o.Name, t.Upgrade))
		}
		res.Backup = o.Backup
		restore = bk.RestoreBackup(o.Backup)
	} else {
		if !t.Plan.PITR {
			return cmdutil.UsageErrorf("database %s is on plan %s, which has no point-in-time recovery", o.Name, t.Plan.Name).
				WithHint("restore a backup by ID instead (--backup, see `stackblaze db backup list %s`), or move to a plan with PITR (standard, pro)", o.Name)
		}
		target, _ := bk.ParseTarget(o.ToTime, o.Now())
		if u := t.Upgrade; u != nil && !u.Stopped.IsZero() && target.Before(u.Stopped) && u.Phase != database.UpgradeReverted {
			return cmdutil.UsageErrorf("%s is before the upgrade of %s from PostgreSQL %d to %d (%s): a restore to then needs PostgreSQL %d",
				target.Format(time.RFC3339), o.Name, u.From, u.To, u.Stopped.UTC().Format(time.RFC3339), u.From).
				WithHint("%s", beforeUpgradeHint(o.Name, u))
		}
		if list.Window == nil || !list.Window.Contains(target) {
			w := "empty: no backup yet"
			if list.Window != nil {
				w = list.Window.String()
			}
			return cmdutil.UsageErrorf("%s is outside the recoverable window of %s", target.Format(time.RFC3339), o.Name).
				WithHint("the recoverable window is %s", w)
		}
		res.Target = target
		restore = bk.RestoreTime(target)
	}
	if o.Into != "" {
		return runInto(ctx, o, t, restore, res, start)
	}
	if err := confirmation(o.Name).Ask(o.IO, o.Yes, fmt.Sprintf("Restore %s in place? Its current data is replaced (a safety backup is taken first)", o.Name)); err != nil {
		return err
	}
	prog.Start("Taking a safety backup of %s", o.Name)
	safety, err := t.Take(ctx, bk.TypeFull)
	prog.Stop()
	if err != nil {
		return cmdutil.KubeError(fmt.Errorf("safety backup before the restore: %w", err), scope)
	}
	res.SafetyBackup = safety.ID
	prog.Done("Safety backup %s taken", safety.ID)

	prog.Start("Restoring beside the running database")
	_, err = t.Run(ctx, t.Config.RestoreInPod(restore))
	prog.Stop()
	if err != nil {
		_, _ = t.Run(ctx, bk.CleanupInPod())
		return retryHint(fmt.Errorf("restore %s: %w", o.Name, err), o, "the database is running unchanged")
	}
	prog.Done("Restored")
	stamp := o.Now().UTC().Format("20060102150405")
	if err := swap(ctx, t, stamp); err != nil {
		_, _ = t.Run(ctx, bk.CleanupInPod())
		return retryHint(fmt.Errorf("restore %s: %w", o.Name, err), o, "the database is running unchanged")
	}
	prog.Start("Restarting %s on the restored data", o.Name)
	err = restartAndWait(ctx, t, o.Timeout)
	prog.Stop()
	if err != nil {
		// Put the original data back so that the database comes up as it was.
		_, _ = t.Run(ctx, bk.UnswapInPod(stamp))
		_ = database.RestartPod(ctx, t.Client.Clientset, t.Client.Namespace, database.PodName(o.Name))
		return retryHint(fmt.Errorf("restore %s: the restored data did not start: %w", o.Name, err), o,
			"the original data was put back and the database restarted on it")
	}
	_, _ = t.Run(ctx, bk.CleanupInPod())
	prog.Done("Database %s restored and running", o.Name)
	// The restored catalog holds the passwords of the time of the backup: the Secrets' passwords
	// (whatever rotations happened since) are set again, and a login with them is proven.
	prog.Start("Setting the credentials of the Secret %s on the restored data", database.CredentialsSecretName(o.Name))
	creds, err := database.ResetCredentials(ctx, c, o.Name, o.Name)
	if err == nil {
		err = database.VerifyLogin(ctx, o.OpenTunnel, o.CheckLogin, c, o.Name, creds)
	}
	prog.Stop()
	if err != nil {
		return retryHint(cmdutil.KubeError(fmt.Errorf("restore %s: the data is restored, but its credentials: %w", o.Name, err), scope), o,
			"the restored data is running")
	}
	prog.Done("Login as %s works on the restored data (through a port-forward)", creds.Username)
	res.Duration = o.Now().Sub(start).Seconds()
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	fmt.Fprintf(o.IO.Out, "Restored %s to %s (safety backup %s)\n", o.Name, res.point(), res.SafetyBackup)
	return nil
}

// restartAndWait restarts the database's pod and waits, up to timeout (0: no limit), until its
// server has finished recovery (which ends with a promotion; until then it only reads).
func restartAndWait(ctx context.Context, t *database.Backups, timeout time.Duration) error {
	wctx, cancel := cmdutil.TimeoutContext(ctx, timeout)
	defer cancel()
	if err := database.RestartPod(wctx, t.Client.Clientset, t.Client.Namespace, database.PodName(t.Name)); err != nil {
		return cmdutil.AsTimeout(err, ctx, wctx)
	}
	return cmdutil.AsTimeout(database.WaitPrimary(wctx, t.Client, t.Name, 0), ctx, wctx)
}

// swap runs SwapInPod. In a pod, stopping the server takes the container (and the exec in it)
// down too, so an error is checked against the pod's state once it answers again.
func swap(ctx context.Context, t *database.Backups, stamp string) error {
	_, err := t.Run(ctx, bk.SwapInPod(stamp))
	if err == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		if out, perr := t.Run(wctx, bk.SwappedInPod(stamp)); perr == nil {
			if strings.TrimSpace(out) == "yes" {
				return nil
			}
			return err
		}
		select {
		case <-wctx.Done():
			return err
		case <-time.After(2 * time.Second):
		}
	}
}

// beforeUpgradeHint says what gives back data from before a major version upgrade.
func beforeUpgradeHint(name string, u *database.UpgradeRecord) string {
	if u != nil && (u.Phase == database.UpgradeDone || u.InProgress()) {
		return fmt.Sprintf("`stackblaze db upgrade %s --revert` goes back to PostgreSQL %d as it was when the upgrade began (until the upgrade is finished)", name, u.From)
	}
	return "the repository keeps that backup until it expires; restore it by hand with pgBackRest and the old major's image (docs/upgrades.md)"
}

func retryHint(err error, o *Options, state string) error {
	return (&cmdutil.Error{Code: cmdutil.ExitCode(err), Err: err}).
		WithHint("%s; retry with the same command, or check with `stackblaze db status %s`", state, o.Name)
}

// completeBackupIDs completes --backup with the IDs of the database named by the first argument,
// read from its repository through the pod (with a short timeout; nothing but candidates).
func completeBackupIDs(f *cmdutil.Factory) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if _, err := cmdutil.CompletionClient(f, cmd); err != nil {
			cobra.CompDebugln("backup IDs: "+err.Error(), false)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
		defer cancel()
		c, err := f.Kube()
		if err != nil {
			cobra.CompDebugln("backup IDs: "+err.Error(), false)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		t, err := database.OpenBackups(ctx, c, args[0])
		if err != nil {
			cobra.CompDebugln("backup IDs: "+err.Error(), false)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		repo, _, err := t.Info(ctx)
		if err != nil {
			cobra.CompDebugln("backup IDs: "+err.Error(), false)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, b := range repo.Backups {
			if strings.HasPrefix(b.ID, toComplete) {
				out = append(out, cobra.CompletionWithDesc(b.ID, b.Type+", "+b.Stop.UTC().Format(time.RFC3339)))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
