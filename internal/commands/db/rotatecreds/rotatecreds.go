// Package rotatecreds is `stackblaze db rotate-credentials NAME`: a new password for the
// application, set without ever leaving a running app with a password the database refuses. The
// command asks, takes the database's rotation lock, and runs database.Rotate (which says how a
// rotation works and why a run killed at any step leaves a state the next run repairs).
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
)

// Steps of a rotation, in order: the points after which Options.AfterStep is called
// (database.Rotate's).
const (
	StepRecorded      = database.StepRecorded
	StepRolesReady    = database.StepRolesReady
	StepPasswordSet   = database.StepPasswordSet
	StepVerified      = database.StepVerified
	StepSecretUpdated = database.StepSecretUpdated
	StepRestarted     = database.StepRestarted
	StepRolledOut     = database.StepRolledOut
	StepRetired       = database.StepRetired
)

// Steps lists them in order.
var Steps = database.RotationSteps

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
	if _, err := database.Guard(ctx, cs, ns, o.Name, database.RotationObjects(o.Name)); err != nil {
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

	rotated, err := database.Rotate(ctx, c, o.Name, database.RotateOptions{
		Grace: o.Grace, Wait: o.Wait, Timeout: o.Timeout, Now: o.Now, Progress: prog, AfterStep: o.AfterStep,
		OpenAdmin: func(tctx context.Context, superuser database.Credentials) (kube.Tunnel, error) {
			t, err := cmdutil.OpenReadyTunnel(tctx, cmdutil.ReadyTunnel{
				Progress: prog, Scope: scope, Target: database.PodName(o.Name), Login: superuser,
				Hint: "; the rotation is recorded, run again to finish it",
				Open: func() (cmdutil.Tunnel, error) {
					return o.OpenTunnel(context.WithoutCancel(ctx), c, ns, database.PodName(o.Name), database.Port)
				},
			})
			return t, cmdutil.AsTimeout(err, ctx, tctx)
		},
	})
	if err != nil {
		prog.Stop()
		return rotateError(err, scope)
	}
	res := &Result{Database: o.Name, Namespace: ns, Secret: database.CredentialsSecretName(o.Name), Restarted: []string{},
		Resumed: rotated.Resumed, RolledOut: rotated.RolledOut, OldLoginDisabled: rotated.OldLoginDisabled}
	rot := rotated.Rotation
	res.Username, res.PreviousUsername, res.GraceSeconds = rot.To, rot.From, rot.Grace.Seconds()
	for _, w := range rotated.Restarted {
		res.Restarted = append(res.Restarted, w.String())
	}
	if !o.Wait {
		prog.Info("Not waiting for the rollouts: the old login %s stays valid; run `stackblaze db rotate-credentials %s --yes` again to finish", rot.From, o.Name)
	}
	return finish(o, res, rot)
}

// rotateError words what database.Rotate returns.
func rotateError(err error, scope cmdutil.Scope) error {
	ns := scope.Namespace
	var mismatch *database.RotationMismatchError
	if errors.As(err, &mismatch) {
		return cmdutil.Errorf(cmdutil.ExitError, "%v", err).
			WithHint("inspect the Secrets %s and %s", mismatch.Secret, database.RotationSecretName(mismatch.Database))
	}
	var rollout *database.RolloutError
	if errors.As(err, &rollout) {
		w := rollout.Workload
		if rollout.TimedOut {
			return cmdutil.Errorf(cmdutil.ExitTimeout, "%v", err).
				WithHint("check it with `kubectl rollout status %s -n %s`, then run rotate-credentials again to finish", w, ns)
		}
		return cmdutil.Errorf(cmdutil.ExitError, "%v", err).
			WithHint("fix the rollout (`kubectl rollout status %s -n %s`, `kubectl describe %s -n %s`), then run rotate-credentials again to finish", w, ns, w, ns)
	}
	return cmdutil.KubeError(err, scope)
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
