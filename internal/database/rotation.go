package database

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/pg"
)

// Steps of a rotation, in order: the points after which RotateOptions.AfterStep is called.
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

// RotationSteps lists them in order.
var RotationSteps = []string{StepRecorded, StepRolesReady, StepPasswordSet, StepVerified, StepSecretUpdated, StepRestarted, StepRolledOut, StepRetired}

// RotateOptions say how Rotate runs. The caller holds the database's rotation lock.
type RotateOptions struct {
	// Grace keeps the old password valid this long after the rollouts (for a new rotation; a
	// resumed one keeps its own).
	Grace time.Duration
	// Wait waits for the rollouts and the grace period and disables the old password; without it
	// Rotate returns after the restarts and leaves that to the next run.
	Wait bool
	// Timeout bounds the wait for the database and the rollouts (0: ctx alone).
	Timeout time.Duration
	// OpenAdmin opens a tunnel to the database's pod on which the superuser (the given
	// credentials) can log in, and closes it when it cannot.
	OpenAdmin func(ctx context.Context, superuser Credentials) (kube.Tunnel, error)
	Now       func() time.Time
	Progress  Progress
	// AfterStep, when set, is called after each step (tests stop a rotation there).
	AfterStep func(step string)
}

// Rotated is what a rotation did.
type Rotated struct {
	Rotation *Rotation
	// Resumed is set when this run finished a rotation that an earlier run started.
	Resumed          bool
	Restarted        []WorkloadRef
	RolledOut        bool
	OldLoginDisabled bool
}

// RotationMismatchError says that the credentials Secret names neither role of the rotation in
// progress: something else changed it.
type RotationMismatchError struct {
	Database, Secret, Role, From, To string
}

func (e *RotationMismatchError) Error() string {
	return fmt.Sprintf("secret %s names role %s, but the rotation in progress is from %s to %s", e.Secret, e.Role, e.From, e.To)
}

// RolloutError says that an attached workload's rollout did not finish (TimedOut: within the
// timeout; otherwise Err says why); the old login stays valid.
type RolloutError struct {
	Workload WorkloadRef
	OldLogin string
	TimedOut bool
	Timeout  time.Duration
	Err      error
}

func (e *RolloutError) Error() string {
	if e.TimedOut {
		return fmt.Sprintf("the rollout of %s did not finish within %s; the old login %s stays valid", e.Workload, e.Timeout, e.OldLogin)
	}
	return fmt.Sprintf("%v; the old login %s stays valid", e.Err, e.OldLogin)
}
func (e *RolloutError) Unwrap() error { return e.Err }

// Rotate gives database name's application a new password without leaving a running app with a
// password the database refuses. The database has two login roles that act as one application
// role (the owner NAME and NAME_b). A rotation, recorded first in the Secret NAME-rotation so that
// a later run finishes it: gives the standby role the new password (a SCRAM-SHA-256 verifier
// computed here), checks it by logging in, points the Secret at it, restarts the attached
// workloads, waits for their rollouts and the grace period, and only then removes the old
// role's password. Each step is idempotent: a run killed at any step leaves the old login valid
// (or the new one in the Secret).
func Rotate(ctx context.Context, c *kube.Client, name string, o RotateOptions) (*Rotated, error) {
	prog := progressOr(o.Progress)
	now := clockOr(o.Now)
	step := func(s string) {
		if o.AfterStep != nil {
			o.AfterStep(s)
		}
	}
	cs, ns := c.Clientset, c.Namespace
	res := &Rotated{}
	creds, err := ReadCredentials(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	rot, err := GetRotation(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	if rot != nil {
		res.Resumed = true
		prog.Info("Finishing the rotation started at %s (%s → %s); --grace of that rotation: %s",
			rot.Started.UTC().Format(time.RFC3339), rot.From, rot.To, rot.Grace)
	} else {
		pw, err := NewPassword()
		if err != nil {
			return nil, err
		}
		t := now()
		rot = &Rotation{ID: fmt.Sprintf("%d", t.UnixNano()), From: creds.Username, To: StandbyRole(name, creds.Username),
			Password: pw, Phase: PhasePending, Grace: o.Grace, Started: t, Holder: kube.DefaultIdentity()}
		if err := CreateRotation(ctx, cs, ns, name, rot); err != nil {
			return nil, err
		}
		prog.Done("Rotation recorded in Secret %s (%s → %s)", RotationSecretName(name), rot.From, rot.To)
	}
	res.Rotation = rot
	step(StepRecorded)
	if creds.Username != rot.From && creds.Username != rot.To {
		return res, &RotationMismatchError{Database: name, Secret: CredentialsSecretName(name), Role: creds.Username, From: rot.From, To: rot.To}
	}

	// The database part, as the superuser through a tunnel.
	tctx, cancel := context.WithCancel(ctx)
	if o.Timeout > 0 {
		tctx, cancel = context.WithTimeout(ctx, o.Timeout)
	}
	defer cancel()
	su, err := ReadSuperuserPassword(ctx, cs, ns, name)
	if err != nil {
		return res, err
	}
	t, err := o.OpenAdmin(tctx, Credentials{Username: "postgres", Password: su, Database: "postgres"})
	if err != nil {
		return res, err
	}
	defer t.Close()
	admin := pg.Login{Host: "127.0.0.1", Port: t.Port(), User: "postgres", Password: su, Database: "postgres"}
	conn, err := pg.Connect(tctx, admin)
	if err != nil {
		return res, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	prog.Done("Connected as the superuser through %s", t.Addr())

	owner, alt := RoleName(name), AltRoleName(name)
	if err := pg.EnsureLoginRoles(tctx, conn, owner, alt); err != nil {
		return res, err
	}
	prog.Done("Login roles %s and %s ready (both act as %s)", owner, alt, owner)
	step(StepRolesReady)

	newLogin := pg.Login{Host: "127.0.0.1", Port: t.Port(), User: rot.To, Password: rot.Password, Database: creds.Database}
	if err := pg.TryLogin(tctx, newLogin); err != nil {
		verifier, err := pg.ScramVerifier(rot.Password)
		if err != nil {
			return res, err
		}
		if err := pg.SetPasswordVerifier(tctx, conn, rot.To, verifier); err != nil {
			return res, err
		}
		prog.Done("New password set on role %s (as a SCRAM-SHA-256 verifier)", rot.To)
	}
	step(StepPasswordSet)
	if err := pg.CheckLogin(tctx, newLogin); err != nil {
		return res, fmt.Errorf("rotate credentials for %s: the new password does not log in: %w", name, err)
	}
	prog.Done("Logged in as %s with the new password", rot.To)
	step(StepVerified)

	changed, err := WriteCredentials(ctx, cs, ns, name, rot.To, rot.Password)
	if err != nil {
		return res, err
	}
	if changed {
		prog.Done("Secret %s updated (username %s, password, DATABASE_URL)", CredentialsSecretName(name), rot.To)
	}
	if rot.Phase == PhasePending {
		rot.Phase = PhaseSecretUpdated
		if err := UpdateRotation(ctx, cs, ns, name, rot); err != nil {
			return res, err
		}
	}
	step(StepSecretUpdated)

	// Workloads attached since the start are restarted too: list again.
	attached, err := ListAttachments(ctx, cs, ns, name)
	if err != nil {
		return res, err
	}
	var live []WorkloadRef
	for _, w := range AttachedWorkloads(attached) {
		restarted, err := RestartWorkload(ctx, cs, ns, w, name, rot.ID)
		var nf *WorkloadNotFoundError
		if errors.As(err, &nf) {
			continue
		}
		if err != nil {
			return res, err
		}
		live = append(live, w)
		res.Restarted = append(res.Restarted, w)
		if restarted {
			prog.Done("Restarted %s", w)
		}
	}
	step(StepRestarted)
	if !o.Wait {
		return res, nil
	}

	for _, w := range live {
		prog.Start("Waiting for the rollout of %s", w)
		if err := WaitRollout(tctx, cs, ns, w); err != nil {
			timedOut := ctx.Err() == nil && tctx.Err() != nil
			var stalled *RolloutStalledError
			if timedOut || errors.As(err, &stalled) {
				return res, &RolloutError{Workload: w, OldLogin: rot.From, TimedOut: timedOut, Timeout: o.Timeout, Err: err}
			}
			return res, err
		}
		prog.Done("%s rolled out", w)
	}
	res.RolledOut = true
	if rot.RolledOutAt.IsZero() {
		rot.RolledOutAt = now()
		rot.Phase = PhaseRolledOut
		if err := UpdateRotation(ctx, cs, ns, name, rot); err != nil {
			return res, err
		}
	}
	step(StepRolledOut)

	if wait := rot.RolledOutAt.Add(rot.Grace).Sub(now()); wait > 0 {
		prog.Start("Grace period: the old login %s stays valid for %s", rot.From, wait.Round(time.Second))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return res, ctx.Err()
		case <-timer.C:
		}
		prog.Done("Grace period of %s over", rot.Grace)
	}
	// A fresh connection: the grace period may have outlasted the first one's idle timeouts.
	rconn, err := pg.Connect(ctx, admin)
	if err != nil {
		return res, err
	}
	defer rconn.Close(context.WithoutCancel(ctx))
	if err := pg.DisablePassword(ctx, rconn, rot.From); err != nil {
		return res, err
	}
	res.OldLoginDisabled = true
	prog.Done("Old login %s disabled", rot.From)
	step(StepRetired)
	if err := DeleteRotation(ctx, cs, ns, name, rot); err != nil {
		return res, err
	}
	return res, nil
}
