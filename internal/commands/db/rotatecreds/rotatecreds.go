// Package rotatecreds is `stackblaze db rotate-credentials NAME`: a new password for the
// application, set without ever leaving a running app with a password the database refuses.
//
// The database has two login roles that act as one application role (the owner NAME and
// NAME_b, a member of it whose sessions start as the owner). A rotation gives the standby role
// (the one the Secret does not name) a new password, sent as a SCRAM-SHA-256 verifier computed
// here, checks it by logging in, points the Secret at it, restarts the attached workloads, waits
// for their rollouts and the grace period, and only then removes the old role's password.
//
// Each step is idempotent, and the rotation is recorded in the Secret NAME-rotation before the
// database is touched: a run killed at any step leaves the old login valid (or the new one in the
// Secret), and the next run finishes the same rotation.
package rotatecreds

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/pg"
)

// Steps of a rotation, in order: the points after which Options.AfterStep is called.
const (
	StepRecorded      = "recorded"
	StepRolesReady    = "roles-ready"
	StepPasswordSet   = "password-set"
	StepVerified      = "verified"
	StepSecretUpdated = "secret-updated"
	StepRestarted     = "restarted"
	StepRolledOut     = "rolled-out"
	StepRetired       = "retired"
)

// Steps lists them in order.
var Steps = []string{StepRecorded, StepRolesReady, StepPasswordSet, StepVerified, StepSecretUpdated, StepRestarted, StepRolledOut, StepRetired}

// afterStep is what the commands built by NewCmdRotateCredentials call after each step. Nothing in
// the product sets it: only this package's tests do (export_test.go), to kill a real process at a
// step and prove that a second run repairs what it left.
var afterStep func(step string)

// Options are the inputs of rotate-credentials.
type Options struct {
	IO         *output.IOStreams
	Kube       func() (*kube.Client, error)
	OpenTunnel cmdutil.TunnelOpener
	Now        func() time.Time

	Name          string
	Grace         time.Duration
	Wait          bool
	Yes           bool
	ShowPassword  bool
	Timeout       time.Duration
	LockTimeout   time.Duration
	LeaseDuration time.Duration

	// AfterStep, when set, is called after each step. Tests use it to stop a rotation at a step;
	// the command sets it only from afterStep, which the product never sets.
	AfterStep func(step string)
}

// NewCmdRotateCredentials builds the command.
func NewCmdRotateCredentials(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, OpenTunnel: f.OpenTunnel, Now: f.Now, AfterStep: afterStep}
	cmd := &cobra.Command{
		Use:   "rotate-credentials NAME",
		Short: "Give the application a new database password and restart the attached workloads",
		Long: strings.TrimSpace(`
Give the application a new random password without breaking it. The database has two login
roles that act as one application role (NAME and NAME_b: objects either creates are owned by
NAME). A rotation:

  1. records the rotation in the Secret NAME-rotation (so that a second run can finish it),
  2. gives the standby role the new password through a tunnel, as a SCRAM-SHA-256 verifier
     computed here (the plaintext never reaches the server, its log or pg_stat_statements),
  3. checks the new password by logging in with it,
  4. writes it to the Secret NAME-credentials (username, password and DATABASE_URL),
  5. restarts every attached workload and waits for the rollouts,
  6. waits --grace, then removes the old role's password.

Until step 6 both logins work, so apps that still hold the old credentials keep connecting. If
the run is interrupted or killed, run it again: it finishes the same rotation. --wait=false
returns after step 5's restarts and leaves the old login valid; the next run finishes.

Only one rotation of a database runs at a time (a Lease). It restarts workloads, so on a
terminal it asks first; elsewhere (or when CI is set) it needs --yes.`),
		Example: `stackblaze db rotate-credentials mydb
stackblaze db rotate-credentials mydb --yes --grace 5m
stackblaze db rotate-credentials mydb --yes -o json --show-password`,
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			opts.Yes = cmdutil.AssumeYes(f, opts.Yes)
			switch {
			case opts.Grace < 0:
				return cmdutil.UsageErrorf("--grace must not be negative")
			case opts.LockTimeout < 0:
				return cmdutil.UsageErrorf("--lock-timeout must not be negative")
			case opts.LeaseDuration < 3*time.Second:
				return cmdutil.UsageErrorf("--lease-duration must be at least 3s, got %s", opts.LeaseDuration)
			case opts.ShowPassword && !opts.IO.IsJSON():
				return cmdutil.UsageErrorf("--show-password needs -o json").
					WithHint("the password is printed only in the JSON document, never in text output")
			}
			if err := confirmation(opts.Name).Refuse(opts.IO, opts.Yes); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Grace, "grace", 0, "keep the old password valid this long after the rollouts are done")
	cmd.Flags().BoolVar(&opts.Wait, "wait", true, "wait for the rollouts (and the grace period) and disable the old password; false leaves that to the next run")
	cmd.Flags().BoolVar(&opts.Yes, "yes", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&opts.ShowPassword, "show-password", false, "include the new password in the -o json document")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 10*time.Minute, "how long to wait for the database and the rollouts (the grace period comes on top)")
	cmd.Flags().DurationVar(&opts.LockTimeout, "lock-timeout", 2*time.Minute, "how long to wait for another rotation of the database to finish")
	cmd.Flags().DurationVar(&opts.LeaseDuration, "lease-duration", 15*time.Second, "how long the lock outlives a run that stopped renewing it (crashed)")
	return cmd
}

func confirmation(name string) cmdutil.Confirmation {
	return cmdutil.Confirmation{
		Action:   "rotate the credentials of " + name,
		Effect:   "it restarts the attached workloads",
		Hint:     "add --yes to rotate them",
		Declined: "not rotated: no confirmation",
	}
}

// Result is what rotate-credentials reports.
type Result struct {
	Database         string   `json:"database"`
	Namespace        string   `json:"namespace"`
	Secret           string   `json:"secret"`
	Username         string   `json:"username"`
	PreviousUsername string   `json:"previousUsername"`
	Restarted        []string `json:"restarted"`
	RolledOut        bool     `json:"rolledOut"`
	GraceSeconds     float64  `json:"graceSeconds"`
	OldLoginDisabled bool     `json:"oldLoginDisabled"`
	// Resumed is set when this run finished a rotation that an earlier run started.
	Resumed  bool   `json:"resumed"`
	Password string `json:"password,omitempty"`
}

func (o *Options) step(s string) {
	if o.AfterStep != nil {
		o.AfterStep(s)
	}
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	kerr := func(err error) error { return cmdutil.KubeError(err, scope) }
	cs, ns := c.Clientset, c.Namespace
	if err := database.Exists(ctx, cs, ns, o.Name); err != nil {
		return kerr(err)
	}
	// What rotation writes must be the database's own: its Secrets and its lock.
	if err := database.Guard(ctx, cs, ns, o.Name, database.RotationObjects(o.Name)); err != nil {
		return kerr(err)
	}
	attached, err := database.ListAttachments(ctx, cs, ns, o.Name)
	if err != nil {
		return kerr(err)
	}
	workloads := database.AttachedWorkloads(attached)
	what := "no attached workloads"
	if len(workloads) > 0 {
		names := make([]string, len(workloads))
		for i, w := range workloads {
			names[i] = w.String()
		}
		what = "restarts " + strings.Join(names, ", ")
	}
	if err := confirmation(o.Name).Ask(o.IO, o.Yes, fmt.Sprintf("Rotate the credentials of %s in namespace %s (%s)?", o.Name, ns, what)); err != nil {
		return err
	}

	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	lock, err := cmdutil.AcquireLock(ctx, prog, c, o.Name, cmdutil.LockRequest{
		Operation: "rotate", Noun: "rotation", Duration: o.LeaseDuration, Wait: o.LockTimeout,
		Hint: fmt.Sprintf("wait for it to finish; a crashed run's lock expires %s after its last renewal", o.LeaseDuration)})
	if err != nil {
		return err
	}
	defer lock.Release()

	res := &Result{Database: o.Name, Namespace: ns, Secret: database.CredentialsSecretName(o.Name), Restarted: []string{}}
	creds, err := database.ReadCredentials(ctx, cs, ns, o.Name)
	if err != nil {
		return kerr(err)
	}
	rot, err := database.GetRotation(ctx, cs, ns, o.Name)
	if err != nil {
		return kerr(err)
	}
	if rot != nil {
		res.Resumed = true
		prog.Info("Finishing the rotation started at %s (%s → %s); --grace of that rotation: %s",
			rot.Started.UTC().Format(time.RFC3339), rot.From, rot.To, rot.Grace)
	} else {
		pw, err := database.NewPassword()
		if err != nil {
			return err
		}
		now := o.Now()
		rot = &database.Rotation{ID: fmt.Sprintf("%d", now.UnixNano()), From: creds.Username, To: database.StandbyRole(o.Name, creds.Username),
			Password: pw, Phase: database.PhasePending, Grace: o.Grace, Started: now, Holder: kube.DefaultIdentity()}
		if err := database.CreateRotation(ctx, cs, ns, o.Name, rot); err != nil {
			return kerr(err)
		}
		prog.Done("Rotation recorded in Secret %s (%s → %s)", database.RotationSecretName(o.Name), rot.From, rot.To)
	}
	o.step(StepRecorded)
	res.Username, res.PreviousUsername, res.GraceSeconds = rot.To, rot.From, rot.Grace.Seconds()
	if creds.Username != rot.From && creds.Username != rot.To {
		return cmdutil.Errorf(cmdutil.ExitError, "secret %s names role %s, but the rotation in progress is from %s to %s",
			res.Secret, creds.Username, rot.From, rot.To).
			WithHint("inspect the Secrets %s and %s", res.Secret, database.RotationSecretName(o.Name))
	}

	// The database part, as the superuser through a tunnel.
	tctx, cancel := cmdutil.TimeoutContext(ctx, o.Timeout)
	defer cancel()
	su, err := database.ReadSuperuserPassword(ctx, cs, ns, o.Name)
	if err != nil {
		return kerr(err)
	}
	t, err := cmdutil.OpenReadyTunnel(tctx, cmdutil.ReadyTunnel{
		Progress: prog, Scope: scope, Target: database.PodName(o.Name),
		Login: database.Credentials{Username: "postgres", Password: su, Database: "postgres"},
		Hint:  "; the rotation is recorded, run again to finish it",
		Open: func() (cmdutil.Tunnel, error) {
			return o.OpenTunnel(context.WithoutCancel(ctx), c, ns, database.PodName(o.Name), database.Port)
		},
	})
	if err != nil {
		return cmdutil.AsTimeout(err, ctx, tctx)
	}
	defer t.Close()
	admin := pg.Login{Host: "127.0.0.1", Port: t.Port(), User: "postgres", Password: su, Database: "postgres"}
	conn, err := pg.Connect(tctx, admin)
	if err != nil {
		prog.Stop()
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	prog.Done("Connected as the superuser through %s", t.Addr())

	owner, alt := database.RoleName(o.Name), database.AltRoleName(o.Name)
	if err := pg.EnsureLoginRoles(tctx, conn, owner, alt); err != nil {
		return err
	}
	prog.Done("Login roles %s and %s ready (both act as %s)", owner, alt, owner)
	o.step(StepRolesReady)

	newLogin := pg.Login{Host: "127.0.0.1", Port: t.Port(), User: rot.To, Password: rot.Password, Database: creds.Database}
	if err := pg.TryLogin(tctx, newLogin); err != nil {
		verifier, err := pg.ScramVerifier(rot.Password)
		if err != nil {
			return err
		}
		if err := pg.SetPasswordVerifier(tctx, conn, rot.To, verifier); err != nil {
			return err
		}
		prog.Done("New password set on role %s (as a SCRAM-SHA-256 verifier)", rot.To)
	}
	o.step(StepPasswordSet)
	if err := pg.CheckLogin(tctx, newLogin); err != nil {
		return fmt.Errorf("rotate credentials for %s: the new password does not log in: %w", o.Name, err)
	}
	prog.Done("Logged in as %s with the new password", rot.To)
	o.step(StepVerified)

	changed, err := database.WriteCredentials(ctx, cs, ns, o.Name, rot.To, rot.Password)
	if err != nil {
		return kerr(err)
	}
	if changed {
		prog.Done("Secret %s updated (username %s, password, DATABASE_URL)", res.Secret, rot.To)
	}
	if rot.Phase == database.PhasePending {
		rot.Phase = database.PhaseSecretUpdated
		if err := database.UpdateRotation(ctx, cs, ns, o.Name, rot); err != nil {
			return kerr(err)
		}
	}
	o.step(StepSecretUpdated)

	// Workloads attached since the start are restarted too: list again.
	if attached, err = database.ListAttachments(ctx, cs, ns, o.Name); err != nil {
		return kerr(err)
	}
	workloads = database.AttachedWorkloads(attached)
	var live []database.WorkloadRef
	for _, w := range workloads {
		restarted, err := database.RestartWorkload(ctx, cs, ns, w, o.Name, rot.ID)
		var nf *database.WorkloadNotFoundError
		if errors.As(err, &nf) {
			continue
		}
		if err != nil {
			return kerr(err)
		}
		live = append(live, w)
		res.Restarted = append(res.Restarted, w.String())
		if restarted {
			prog.Done("Restarted %s", w)
		}
	}
	o.step(StepRestarted)
	if !o.Wait {
		prog.Info("Not waiting for the rollouts: the old login %s stays valid; run `stackblaze db rotate-credentials %s --yes` again to finish", rot.From, o.Name)
		return finish(o, res, rot)
	}

	for _, w := range live {
		prog.Start("Waiting for the rollout of %s", w)
		if err := database.WaitRollout(tctx, cs, ns, w); err != nil {
			prog.Stop()
			if ctx.Err() == nil && tctx.Err() != nil {
				return cmdutil.Errorf(cmdutil.ExitTimeout, "the rollout of %s did not finish within %s; the old login %s stays valid", w, o.Timeout, rot.From).
					WithHint("check it with `kubectl rollout status %s -n %s`, then run rotate-credentials again to finish", w, ns)
			}
			var stalled *database.RolloutStalledError
			if errors.As(err, &stalled) {
				return cmdutil.Errorf(cmdutil.ExitError, "%v; the old login %s stays valid", err, rot.From).
					WithHint("fix the rollout (`kubectl rollout status %s -n %s`, `kubectl describe %s -n %s`), then run rotate-credentials again to finish", w, ns, w, ns)
			}
			return kerr(err)
		}
		prog.Done("%s rolled out", w)
	}
	res.RolledOut = true
	if rot.RolledOutAt.IsZero() {
		rot.RolledOutAt = o.Now()
		rot.Phase = database.PhaseRolledOut
		if err := database.UpdateRotation(ctx, cs, ns, o.Name, rot); err != nil {
			return kerr(err)
		}
	}
	o.step(StepRolledOut)

	if wait := rot.RolledOutAt.Add(rot.Grace).Sub(o.Now()); wait > 0 {
		prog.Start("Grace period: the old login %s stays valid for %s", rot.From, wait.Round(time.Second))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			prog.Stop()
			return kerr(ctx.Err())
		case <-timer.C:
		}
		prog.Done("Grace period of %s over", rot.Grace)
	}
	// A fresh connection: the grace period may have outlasted the first one's idle timeouts.
	rconn, err := pg.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer rconn.Close(context.WithoutCancel(ctx))
	if err := pg.DisablePassword(ctx, rconn, rot.From); err != nil {
		return err
	}
	res.OldLoginDisabled = true
	prog.Done("Old login %s disabled", rot.From)
	o.step(StepRetired)
	if err := database.DeleteRotation(ctx, cs, ns, o.Name, rot); err != nil {
		return kerr(err)
	}
	return finish(o, res, rot)
}

func finish(o *Options, res *Result, rot *database.Rotation) error {
	if o.ShowPassword {
		res.Password = rot.Password
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	w := o.IO.Out
	fmt.Fprintf(w, "Credentials of %s rotated: Secret %s now holds role %s (was %s).\n", res.Database, res.Secret, res.Username, res.PreviousUsername)
	if len(res.Restarted) == 0 {
		fmt.Fprintln(w, "No attached workloads to restart.")
	} else {
		state := "restarted"
		if res.RolledOut {
			state = "restarted and rolled out"
		}
		fmt.Fprintf(w, "Workloads %s: %s.\n", state, strings.Join(res.Restarted, ", "))
	}
	if res.OldLoginDisabled {
		fmt.Fprintf(w, "The old login %s is disabled.\n", res.PreviousUsername)
	} else {
		fmt.Fprintf(w, "The old login %s is still valid: run rotate-credentials again to disable it once the rollouts are done.\n", res.PreviousUsername)
	}
	return nil
}
