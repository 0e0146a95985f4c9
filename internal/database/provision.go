package database

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/pg"
)

// Progress receives the steps of a long operation (the command layer shows them as ✔ lines).
type Progress interface {
	Start(format string, args ...any)
	Done(format string, args ...any)
	Info(format string, args ...any)
	Warn(format string, args ...any)
}

// NoProgress discards the steps.
type NoProgress struct{}

func (NoProgress) Start(string, ...any) {}
func (NoProgress) Done(string, ...any)  {}
func (NoProgress) Info(string, ...any)  {}
func (NoProgress) Warn(string, ...any)  {}

// progressOr is p, or NoProgress when p is nil.
func progressOr(p Progress) Progress {
	if p == nil {
		return NoProgress{}
	}
	return p
}

// clockOr is now, or time.Now when now is nil.
func clockOr(now func() time.Time) func() time.Time {
	if now == nil {
		return time.Now
	}
	return now
}

// ProvisionOptions say what Provision makes and how long it waits.
type ProvisionOptions struct {
	Spec Spec
	// BackupCron is the daily backup's schedule; BackupCronSet says the user chose it, so that
	// provisioning again does not move a schedule set with `db backup schedule`.
	BackupCron    string
	BackupCronSet bool
	BackupImage   string

	// NoWait returns once the objects are written.
	NoWait bool
	// Timeout bounds the wait for the pod and the login (0: ctx alone).
	Timeout time.Duration

	OpenTunnel  kube.TunnelOpener
	CheckLogin  func(context.Context, pg.Login) error
	InitBackups func(ctx context.Context, c *kube.Client, name string) error
	Now         func() time.Time
	Progress    Progress
}

// Provisioned is what Provision made.
type Provisioned struct {
	Spec        Spec
	Credentials Credentials
	Changes     []Change
	// New is true when the database did not exist before.
	New bool
	// Ready is true when Provision waited and a login worked.
	Ready bool
	// Stopped is true when the database exists scaled to 0.
	Stopped bool
}

// NotReadyError says that a database's pod did not become ready in time; Why is what the cluster
// tells about it.
type NotReadyError struct {
	Name    string
	Timeout time.Duration
	Why     []string
}

func (e *NotReadyError) Error() string {
	if e.Timeout == 0 {
		return fmt.Sprintf("database %s is not ready", e.Name)
	}
	return fmt.Sprintf("database %s is not ready after %s", e.Name, e.Timeout)
}

// LoginTimeoutError says that the pod was ready but the application's login did not work in time.
type LoginTimeoutError struct {
	Name    string
	Timeout time.Duration
	Err     error
}

func (e *LoginTimeoutError) Error() string {
	return fmt.Sprintf("database %s: no login within %s: %v", e.Name, e.Timeout, e.Err)
}
func (e *LoginTimeoutError) Unwrap() error { return e.Err }

// LoginRefusedError says that the server refused the Secret's credentials: the data directory
// predates the Secret.
type LoginRefusedError struct {
	Name string
	Err  error
}

func (e *LoginRefusedError) Error() string { return fmt.Sprintf("database %s: %v", e.Name, e.Err) }
func (e *LoginRefusedError) Unwrap() error { return e.Err }

// Provision makes database o.Spec.Name in c's namespace, or repairs it when it exists with the same
// spec: ownership is checked first (Guard), then the objects are applied, then (unless NoWait) it
// waits until the pod is ready and the application's login works through a port-forward.
func Provision(ctx context.Context, c *kube.Client, o ProvisionOptions) (*Provisioned, error) {
	prog := progressOr(o.Progress)
	now := clockOr(o.Now)
	spec := o.Spec
	spec.Namespace = c.Namespace

	prog.Start("Checking the namespace %s", spec.Namespace)
	found, err := Guard(ctx, c.Clientset, spec.Namespace, spec.Name, Owned(spec.Name))
	if err != nil {
		return nil, err
	}
	existing := ExistingIn(found, spec.Name)
	replicas := int32(1)
	if sts := existing.StatefulSet; sts != nil {
		if d := Diff(sts, spec); len(d) > 0 {
			return nil, &ConflictError{Name: spec.Name, Differences: d}
		}
		if sts.Spec.Replicas != nil {
			replicas = *sts.Spec.Replicas
		}
	}
	if err := kube.CheckAccess(ctx, c.Clientset, spec.Namespace, CreateAccess); err != nil {
		return nil, err
	}
	creds, err := CredentialsFrom(spec.Name, existing)
	if err != nil {
		return nil, err
	}

	prog.Start("Writing the objects of %s", spec.Name)
	changes, err := Apply(ctx, c.Clientset, BuildObjects(spec, creds, replicas), found)
	if err != nil {
		return nil, err
	}
	more, err := ApplyBackupSchedule(ctx, c.Clientset, spec.Namespace, spec.Name, o.backupSchedule(found), found)
	changes = append(changes, more...)
	if err != nil {
		return nil, err
	}
	res := &Provisioned{Spec: spec, Credentials: creds, Changes: changes, New: existing.StatefulSet == nil}
	switch {
	case len(changes) == 0:
		prog.Done("Nothing changed: %s already exists with this spec", spec.Name)
	case res.New:
		prog.Done("Created %s: PostgreSQL %d, %s, plan %s (%d objects)", spec.Name, spec.Version, spec.Storage.String(), spec.Plan.Name, len(changes))
	default:
		names := make([]string, len(changes))
		for i, ch := range changes {
			names[i] = ch.String()
		}
		prog.Done("Repaired %s: %s", spec.Name, strings.Join(names, ", "))
	}
	if o.NoWait {
		return res, nil
	}
	if replicas == 0 {
		res.Stopped = true
		return res, nil
	}

	wctx, cancel := context.WithCancel(ctx)
	if o.Timeout > 0 {
		wctx, cancel = context.WithTimeout(ctx, o.Timeout)
	}
	defer cancel()
	start := now()
	prog.Start("Waiting for pod %s to be ready", PodName(spec.Name))
	if _, err := kube.WaitPodReady(wctx, c.Clientset, spec.Namespace, PodName(spec.Name)); err != nil {
		if ctx.Err() != nil || wctx.Err() == nil {
			return nil, err
		}
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer dcancel()
		return nil, &NotReadyError{Name: spec.Name, Timeout: o.Timeout, Why: DescribeNotReady(dctx, c.Clientset, spec.Namespace, spec.Name)}
	}
	prog.Done("Pod %s is ready (%s)", PodName(spec.Name), now().Sub(start).Round(time.Second))

	prog.Start("Logging in as %s through a port-forward", creds.Username)
	if err := VerifyLogin(wctx, o.OpenTunnel, o.CheckLogin, c, spec.Name, creds); err != nil {
		if wctx.Err() != nil && ctx.Err() == nil {
			return nil, &LoginTimeoutError{Name: spec.Name, Timeout: o.Timeout, Err: err}
		}
		return nil, err
	}
	prog.Done("Login as %s works (through a port-forward)", creds.Username)
	res.Ready = true
	if o.InitBackups != nil {
		prog.Start("Preparing the backup repository")
		if err := o.InitBackups(wctx, c, spec.Name); err != nil {
			// The database works; the first backup prepares the repository again.
			prog.Warn("the backup repository is not ready yet (%v); the first backup will prepare it", err)
		} else {
			prog.Done("Backups: daily, WAL archived to the backup volume")
		}
	}
	return res, nil
}

// backupSchedule is the daily backup Provision writes: BackupCron when the user chose it;
// otherwise the schedule and image the database already has (in found), or the defaults for a new
// one.
func (o ProvisionOptions) backupSchedule(found Found) BackupSchedule {
	want := BackupSchedule{Cron: o.BackupCron, Image: o.BackupImage}
	if want.Image == "" {
		want.Image = BackupImage("")
	}
	if want.Cron == "" {
		want.Cron, _ = ParseAt(DefaultBackupAt)
	}
	cur := BackupScheduleIn(found, o.Spec.Name)
	if cur == nil {
		return want
	}
	if !o.BackupCronSet {
		want.Cron = cur.Cron
	}
	if cur.Image != "" {
		want.Image = cur.Image
	}
	return want
}

// VerifyLogin logs in with creds through a fresh port-forward to the database pod.
func VerifyLogin(ctx context.Context, open kube.TunnelOpener, check func(context.Context, pg.Login) error, c *kube.Client, name string, creds Credentials) error {
	t, err := open(ctx, c, c.Namespace, PodName(name), Port)
	if err != nil {
		return fmt.Errorf("open a port-forward to %s: %w", PodName(name), err)
	}
	defer t.Close()
	err = check(ctx, pg.Login{Host: "127.0.0.1", Port: t.Port(), User: creds.Username, Password: creds.Password, Database: creds.Database})
	if errors.Is(err, pg.ErrAuth) {
		return &LoginRefusedError{Name: name, Err: err}
	}
	return err
}

// CreateAccess is what create needs beyond reading; checked before anything is written, so that a
// user without it gets one clear error and no half-made database.
var CreateAccess = append(createAndPatch(
	kube.Access{Resource: "secrets"},
	kube.Access{Resource: "configmaps"},
	kube.Access{Resource: "services"},
	kube.Access{Group: "networking.k8s.io", Resource: "networkpolicies"},
	kube.Access{Group: "apps", Resource: "statefulsets"},
	// The daily backup: its CronJob, and the ServiceAccount, Role and RoleBinding it runs as.
	kube.Access{Group: "batch", Resource: "cronjobs"},
	kube.Access{Resource: "serviceaccounts"},
	kube.Access{Group: "rbac.authorization.k8s.io", Resource: "roles"},
	kube.Access{Group: "rbac.authorization.k8s.io", Resource: "rolebindings"},
),
	// Granting the backup Role needs the permissions it grants (RBAC refuses escalation).
	kube.Access{Verb: "create", Resource: "pods", Subresource: "exec"},
)

// createAndPatch is create and patch (server-side apply) on each resource.
func createAndPatch(resources ...kube.Access) []kube.Access {
	var out []kube.Access
	for _, r := range resources {
		for _, verb := range []string{"create", "patch"} {
			r.Verb = verb
			out = append(out, r)
		}
	}
	return out
}
