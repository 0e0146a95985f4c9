// Package upgrade is `stackblaze db upgrade NAME`: a major version upgrade with pg_upgrade, with a
// check that changes nothing (--check), a backup around it, and a way back (--revert) until the
// user confirms it (--finish). The steps are database.UpgradeMajor's and database.Revert's; the
// command validates, asks, takes the database's upgrade lock and renders.
package upgrade

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Steps are the steps of an upgrade, in order: the points after which Options.AfterStep is called
// (database.UpgradeMajor's).
var Steps = database.UpgradeSteps

// afterStep is what the commands built by NewCmdUpgrade call after each step of an upgrade.
// Nothing in the product sets it: only this package's tests do (export_test.go), to kill a real
// process at a step and prove that a second run goes on from there.
var afterStep func(step string)

// Options are the inputs of upgrade.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name          string
	Version       string
	Check         bool
	Revert        bool
	Finish        bool
	Yes           bool
	Timeout       time.Duration
	LockTimeout   time.Duration
	LeaseDuration time.Duration

	// AfterStep, when set, is called after each step (tests only, through afterStep).
	AfterStep func(step string)
}

// NewCmdUpgrade builds the command.
func NewCmdUpgrade(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now, AfterStep: afterStep}
	cmd := &cobra.Command{
		Use:   "upgrade NAME (--version N [--check] | --revert | --finish)",
		Short: "Upgrade a database to a newer PostgreSQL major version, check first, or go back",
		Long: strings.TrimSpace(`
Upgrade a database to a newer PostgreSQL major version with pg_upgrade, in place: the data
files are hard-linked, not copied, so the write outage is seconds and hardly grows with the
data. Majors may be skipped (15 to 17).

--check runs pg_upgrade's own check against the live data with both majors' binaries, in a pod
beside the running database, and the checks pg_upgrade does not make (extensions with no build
for the new major, settings the new major does not know, replication slots, MD5 passwords). It
changes nothing. It exits with code 9 when something blocks the upgrade; each finding says
what to do.

Without --check the upgrade asks first (--yes in CI), then:

  1. checks again, and takes a full backup of the old major (the way back),
  2. prepares a pod with both majors' binaries beside the running database,
  3. stops the database (the outage begins),
  4. runs pg_upgrade --link in that pod and upgrades the pgBackRest stanza,
  5. starts the new major (the outage ends),
  6. rebuilds the planner statistics in stages while the database serves,
  7. takes a full backup of the new major, so that point-in-time recovery works at once.

Every step is recorded on the database's StatefulSet: if the run is interrupted or killed, run
the same command again and it goes on. If pg_upgrade fails, the old data is put back and the
old major started; if the new major does not start, the database goes back to the old major
from the backup.

Until you confirm the upgrade with --finish, --revert gives back the old major: it restores the
backup of step 1 and all the WAL archived until the database stopped. It says first what would
be lost (everything written since the upgrade) and asks.`),
		Example: `stackblaze db upgrade mydb --version 17 --check
stackblaze db upgrade mydb --version 17 --yes
stackblaze db upgrade mydb --revert --yes
stackblaze db upgrade mydb --finish`,
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			modes := 0
			for _, b := range []bool{opts.Version != "", opts.Revert, opts.Finish} {
				if b {
					modes++
				}
			}
			switch {
			case modes != 1:
				return cmdutil.UsageErrorf("say what to do: --version N (with --check to only check), --revert or --finish").
					WithHint("the supported majors are %s", database.VersionList())
			case opts.Check && opts.Version == "":
				return cmdutil.UsageErrorf("--check needs --version N: the major to check an upgrade to")
			case opts.LockTimeout < 0:
				return cmdutil.UsageErrorf("--lock-timeout must not be negative")
			case opts.LeaseDuration < 3*time.Second:
				return cmdutil.UsageErrorf("--lease-duration must be at least 3s, got %s", opts.LeaseDuration)
			}
			if opts.Version != "" {
				if _, err := database.ParseVersion(opts.Version); err != nil {
					return cmdutil.UsageErrorf("--version: %v", err)
				}
			}
			opts.Yes = cmdutil.AssumeYes(f, opts.Yes)
			if !opts.Check && !opts.Finish {
				if err := confirmation(opts).Refuse(opts.IO, opts.Yes); err != nil {
					return err
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Version, "version", "", "the PostgreSQL major to upgrade to ("+database.VersionList()+")")
	_ = cmd.RegisterFlagCompletionFunc("version", func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var v []cobra.Completion
		for _, n := range database.Versions {
			v = append(v, strconv.Itoa(n))
		}
		return v, cobra.ShellCompDirectiveNoFileComp
	})
	cmd.Flags().BoolVar(&opts.Check, "check", false, "only check whether the upgrade can run; change nothing")
	cmd.Flags().BoolVar(&opts.Revert, "revert", false, "go back to the old major after an upgrade not yet finished")
	cmd.Flags().BoolVar(&opts.Finish, "finish", false, "confirm the upgrade: the way back (--revert) closes")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 10*time.Minute, "how long to wait for the check (--check) and for the database to accept connections on the new major (with --revert, the old one)")
	cmd.Flags().DurationVar(&opts.LockTimeout, "lock-timeout", 2*time.Minute, "how long to wait for another upgrade run of the database to finish")
	cmd.Flags().DurationVar(&opts.LeaseDuration, "lease-duration", 15*time.Second, "how long the lock outlives a run that stopped renewing it (crashed)")
	return cmd
}

func confirmation(o *Options) cmdutil.Confirmation {
	if o.Revert {
		return cmdutil.Confirmation{
			Action:   "revert the upgrade of " + o.Name,
			Effect:   "what was written since the upgrade is lost",
			Hint:     "add --yes to go back",
			Declined: "not reverted: no confirmation",
		}
	}
	return cmdutil.Confirmation{
		Action:   "upgrade " + o.Name + " to PostgreSQL " + o.Version,
		Effect:   "the database refuses connections while pg_upgrade runs",
		Hint:     "add --yes to upgrade it (check first with --check)",
		Declined: "not upgraded: no confirmation",
	}
}

// Result is what upgrade reports (-o json).
type Result struct {
	Database string                  `json:"database"`
	Action   string                  `json:"action"`
	Check    *database.CheckResult   `json:"check,omitempty"`
	Upgrade  *database.UpgradeRecord `json:"upgrade,omitempty"`
	// OutageSeconds is how long the database refused connections during the upgrade.
	OutageSeconds float64        `json:"outageSeconds,omitempty"`
	Resumed       bool           `json:"resumed,omitempty"`
	Lost          *database.Loss `json:"lost,omitempty"`
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	kerr := func(err error) error { return upgradeError(err, scope) }
	cs, ns := c.Clientset, c.Namespace
	sts, err := database.GetDatabase(ctx, cs, ns, o.Name)
	if err != nil {
		return kerr(err)
	}
	switch {
	case o.Finish:
		rec, err := database.FinishUpgrade(ctx, c, o.Name, o.Now())
		if err != nil {
			return kerr(err)
		}
		if o.IO.IsJSON() {
			return output.JSON(o.IO.Out, Result{Database: o.Name, Action: "finish", Upgrade: rec})
		}
		fmt.Fprintf(o.IO.Out, "Upgrade of %s from PostgreSQL %d to %d finished: there is no way back with --revert any more.\n", o.Name, rec.From, rec.To)
		return nil
	case o.Revert:
		return revert(ctx, o, c, scope)
	}
	to, _ := database.ParseVersion(o.Version)
	rec, err := database.UpgradeOf(sts)
	if err != nil {
		return kerr(err)
	}
	if !rec.InProgress() {
		if _, err := database.ValidateUpgrade(database.VersionOf(sts), o.Version); err != nil {
			if !(rec != nil && rec.Phase == database.UpgradeDone && rec.To == to) {
				return cmdutil.UsageErrorf("%v", err)
			}
		}
	}
	if o.Check {
		prog := o.IO.NewProgress(o.Now)
		prog.Start("Checking that %s can go from PostgreSQL %d to %d (pg_upgrade --check on the live data)", o.Name, database.VersionOf(sts), to)
		wctx, cancel := cmdutil.TimeoutContext(ctx, o.Timeout)
		defer cancel()
		chk, err := database.CheckUpgrade(wctx, c, o.Name, to)
		prog.Stop()
		if err != nil {
			return kerr(cmdutil.AsTimeout(err, ctx, wctx))
		}
		return reportCheck(o, chk)
	}
	if err := confirmation(o).Ask(o.IO, o.Yes, fmt.Sprintf("Upgrade %s in namespace %s from PostgreSQL %d to %d? It refuses connections while pg_upgrade runs", o.Name, ns, database.VersionOf(sts), to)); err != nil {
		return err
	}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	lock, err := acquire(ctx, prog, c, o)
	if err != nil {
		return err
	}
	defer lock.Release()
	up, err := database.UpgradeMajor(ctx, c, o.Name, database.UpgradeOptions{
		To: to, Timeout: o.Timeout, Now: o.Now, Progress: prog, AfterStep: o.AfterStep})
	if err != nil {
		prog.Stop()
		var blocked *database.UpgradeBlockedError
		if errors.As(err, &blocked) {
			_ = reportCheck(o, blocked.Result)
		}
		return kerr(err)
	}
	res := Result{Database: o.Name, Action: "upgrade", Check: up.Check, Upgrade: up.Record, Resumed: up.Resumed,
		OutageSeconds: up.Record.Outage().Seconds()}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	r := up.Record
	fmt.Fprintf(o.IO.Out, "Upgraded %s from PostgreSQL %d to %d; writes were refused for %s.\n", o.Name, r.From, r.To, r.Outage().Round(100*time.Millisecond))
	fmt.Fprintf(o.IO.Out, "Until you run `stackblaze db upgrade %s --finish`, `stackblaze db upgrade %s --revert` goes back to %d (from backup %s).\n", o.Name, o.Name, r.From, r.Backup)
	return nil
}

func acquire(ctx context.Context, prog *output.Progress, c *kube.Client, o *Options) (*cmdutil.Lock, error) {
	return cmdutil.AcquireLock(ctx, prog, c, o.Name, cmdutil.LockRequest{
		Operation: "upgrade", Noun: "upgrade", Duration: o.LeaseDuration, Wait: o.LockTimeout,
		Hint: fmt.Sprintf("wait for it to finish; a crashed run's lock expires %s after its last renewal", o.LeaseDuration)})
}

func revert(ctx context.Context, o *Options, c *kube.Client, scope cmdutil.Scope) error {
	kerr := func(err error) error { return upgradeError(err, scope) }
	rec, err := database.PendingUpgrade(ctx, c.Clientset, c.Namespace, o.Name)
	if err != nil {
		return kerr(err)
	}
	var lost *database.Loss
	question := fmt.Sprintf("Put %s back on PostgreSQL %d?", o.Name, rec.From)
	switch rec.Phase {
	case database.UpgradeBackedUp, database.UpgradeStopped, database.UpgradeUpgraded:
		question = fmt.Sprintf("Put %s back on PostgreSQL %d? PostgreSQL %d never ran on its data, so nothing is lost", o.Name, rec.From, rec.To)
	default:
		lost = database.UpgradeLoss(ctx, c, o.Name, rec)
		if !o.IO.IsJSON() {
			describeLoss(o.IO, o.Name, rec, lost)
		}
		question = fmt.Sprintf("Put %s back on PostgreSQL %d as it was at %s, losing what was written since?", o.Name, rec.From, rec.Stopped.UTC().Format(time.RFC3339))
	}
	if err := confirmation(o).Ask(o.IO, o.Yes, question); err != nil {
		return err
	}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	lock, err := acquire(ctx, prog, c, o)
	if err != nil {
		return err
	}
	defer lock.Release()
	rec, err = database.Revert(ctx, c, o.Name, database.RevertOptions{Timeout: o.Timeout, Now: o.Now, Progress: prog})
	if err != nil {
		prog.Stop()
		return kerr(err)
	}
	prog.Stop()
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, Result{Database: o.Name, Action: "revert", Upgrade: rec, Lost: lost})
	}
	fmt.Fprintf(o.IO.Out, "%s is back on PostgreSQL %d, as it was when the upgrade to %d stopped it (%s).\n", o.Name, rec.From, rec.To, rec.Stopped.UTC().Format(time.RFC3339))
	return nil
}

// describeLoss says what going back loses.
func describeLoss(ios *output.IOStreams, name string, rec *database.UpgradeRecord, l *database.Loss) {
	w := ios.ErrOut
	fmt.Fprintf(w, "Going back restores %s as it was at %s, when the upgrade stopped it.\n", name, rec.Stopped.UTC().Format(time.RFC3339))
	switch {
	case l.Unknown:
		fmt.Fprintf(w, "What was written on PostgreSQL %d since cannot be read (the database does not answer): all of it would be lost.\n", rec.To)
	case len(l.Tables) == 0:
		fmt.Fprintf(w, "Nothing was written on PostgreSQL %d since: nothing is lost.\n", rec.To)
	default:
		fmt.Fprintf(w, "Written on PostgreSQL %d since, and lost by going back: %d rows inserted, %d updated, %d deleted:\n", rec.To, l.Inserted, l.Updated, l.Deleted)
		rows := make([][]string, 0, len(l.Tables))
		for _, t := range l.Tables {
			rows = append(rows, []string{"  " + t.Database, t.Table, strconv.FormatInt(t.Inserted, 10), strconv.FormatInt(t.Updated, 10), strconv.FormatInt(t.Deleted, 10)})
		}
		_ = output.Table(w, []string{"  DATABASE", "TABLE", "INSERTED", "UPDATED", "DELETED"}, rows)
	}
}

// reportCheck prints the check's findings; blockers exit with ExitBlocked.
func reportCheck(o *Options, chk *database.CheckResult) error {
	if o.IO.IsJSON() {
		if err := output.JSON(o.IO.Out, Result{Database: o.Name, Action: "check", Check: chk}); err != nil {
			return err
		}
	} else {
		w := o.IO.Out
		for _, f := range chk.Findings {
			mark := "⚠"
			if f.Severity == "blocker" {
				mark = "✖"
			}
			where := ""
			if f.Database != "" {
				where = " (database " + f.Database + ")"
			}
			fmt.Fprintf(w, "%s %s%s\n", mark, f.Message, where)
		}
		if !chk.Blocked {
			fmt.Fprintf(w, "%s can be upgraded from PostgreSQL %d to %d: run `stackblaze db upgrade %s --version %d`.\n", o.Name, chk.From, chk.To, o.Name, chk.To)
		}
	}
	if chk.Blocked {
		return cmdutil.Errorf(cmdutil.ExitBlocked, "database %s cannot be upgraded from PostgreSQL %d to %d yet: fix what the check found (✖), then check again", o.Name, chk.From, chk.To).
			WithHint("nothing was changed; rerun `stackblaze db upgrade %s --version %d --check`", o.Name, chk.To)
	}
	return nil
}

// upgradeError words what the domain layer returns.
func upgradeError(err error, scope cmdutil.Scope) error {
	var blocked *database.UpgradeBlockedError
	if errors.As(err, &blocked) {
		return cmdutil.Errorf(cmdutil.ExitBlocked, "%v", err).
			WithHint("nothing was changed; fix what the check found, then rerun `stackblaze db upgrade %s --version %d --check`", scope.Database, blocked.Result.To)
	}
	var none *database.NoUpgradeError
	if errors.As(err, &none) {
		return cmdutil.Errorf(cmdutil.ExitUsage, "%v", err)
	}
	var failed *database.UpgradeFailedError
	if errors.As(err, &failed) {
		return cmdutil.Errorf(cmdutil.ExitError, "%v", err).
			WithHint("fix the cause, then run `%s`", failed.Next)
	}
	var podFailed *database.PodFailedError
	if errors.As(err, &podFailed) {
		return cmdutil.Errorf(cmdutil.ExitError, "%v", err).
			WithHint("run the same command again: it goes on from the last step done (`stackblaze db status %s` shows it)", scope.Database)
	}
	return cmdutil.KubeError(err, scope)
}
