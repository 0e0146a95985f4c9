package database

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	bk "github.com/stackblaze/stackblaze/internal/backup"
	"github.com/stackblaze/stackblaze/internal/kube"
)

// AnnotationUpgrade on a database's StatefulSet records its last major version upgrade (an
// UpgradeRecord as JSON): a run that is stopped resumes from it, status shows it, and the way
// back reads its backup from it.
const AnnotationUpgrade = "stackblaze.io/upgrade"

// Phases of an upgrade, in order. Each names the last step done: a rerun goes on from there.
const (
	UpgradeBackedUp = "backed-up" // checked, and a backup of the old major taken (the way back)
	UpgradeStopped  = "stopped"   // the database is stopped: the write outage has begun
	UpgradeUpgraded = "upgraded"  // pg_upgrade made PGDATA the new major (the old data can still be put back)
	UpgradeStarting = "starting"  // the database runs the new major's image: the way back is the backup
	UpgradeStarted  = "started"   // the new major accepts connections: the outage is over
	UpgradeAnalyzed = "analyzed"  // planner statistics rebuilt
	UpgradeDone     = "done"      // a full backup of the new major taken; --revert works until --finish

	UpgradeFinished  = "finished"  // confirmed: no way back any more
	UpgradeReverting = "reverting" // going back to the old major from the backup
	UpgradeReverted  = "reverted"  // back on the old major
)

// UpgradeSteps are the phases of an upgrade in order (the points after which
// UpgradeOptions.AfterStep is called).
var UpgradeSteps = []string{UpgradeBackedUp, UpgradeStopped, UpgradeUpgraded, UpgradeStarting, UpgradeStarted, UpgradeAnalyzed, UpgradeDone}

// UpgradeRecord is a database's last major version upgrade.
type UpgradeRecord struct {
	From    int       `json:"from"`
	To      int       `json:"to"`
	Phase   string    `json:"phase"`
	Started time.Time `json:"started"`
	// Backup is the old major's backup taken before the upgrade: the way back.
	Backup string `json:"backup,omitempty"`
	// Stopped and Up bound the write outage: the database was stopped, and the new major
	// accepted connections.
	Stopped time.Time `json:"stopped,omitzero"`
	Up      time.Time `json:"up,omitzero"`
	// NewBackup is the new major's first full backup.
	NewBackup string    `json:"newBackup,omitempty"`
	Finished  time.Time `json:"finished,omitzero"`
	Reverted  time.Time `json:"reverted,omitzero"`
	// RevertBy is how the way back runs: "undo" (the old data put back, before pg_upgrade
	// finished) or "backup"; Restored is set once it has put the old major's data in place.
	RevertBy string `json:"revertBy,omitempty"`
	Restored bool   `json:"restored,omitempty"`
	// The old cluster's encoding, locales and checksums, which the new cluster must share.
	Encoding  string `json:"encoding,omitempty"`
	Collate   string `json:"collate,omitempty"`
	Ctype     string `json:"ctype,omitempty"`
	Checksums string `json:"checksums,omitempty"`
}

// Outage is how long the database refused connections (0 while it is not over).
func (r *UpgradeRecord) Outage() time.Duration {
	if r.Stopped.IsZero() || r.Up.IsZero() {
		return 0
	}
	return r.Up.Sub(r.Stopped)
}

// InProgress tells whether an upgrade or its way back has not finished.
func (r *UpgradeRecord) InProgress() bool {
	return r != nil && r.Phase != UpgradeDone && r.Phase != UpgradeFinished && r.Phase != UpgradeReverted
}

func (r *UpgradeRecord) reached(phase string) bool {
	return slices.Index(UpgradeSteps, r.Phase) >= slices.Index(UpgradeSteps, phase)
}

// UpgradeOf reads a StatefulSet's upgrade record; nil when it has none.
func UpgradeOf(sts *appsv1.StatefulSet) (*UpgradeRecord, error) {
	v, ok := sts.Annotations[AnnotationUpgrade]
	if !ok {
		return nil, nil
	}
	r := &UpgradeRecord{}
	if err := json.Unmarshal([]byte(v), r); err != nil {
		return nil, fmt.Errorf("statefulset %s: annotation %s: %w", sts.Name, AnnotationUpgrade, err)
	}
	return r, nil
}

// VersionOf is the major version a database's StatefulSet runs.
func VersionOf(sts *appsv1.StatefulSet) int {
	v, _ := strconv.Atoi(sts.Annotations[AnnotationVersion])
	return v
}

// ImageFor is the image of major version v in the repository sts's image comes from.
func ImageFor(sts *appsv1.StatefulSet, v int) string {
	repo := DefaultImageRepository
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name == ContainerName {
			repo = c.Image
			if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
				repo = repo[:i]
			}
		}
	}
	return fmt.Sprintf("%s:%d", repo, v)
}

// ValidateUpgrade checks that from can be upgraded to to: a supported major, newer than from.
// pg_upgrade goes from any older major to a newer one in one step, so skipping majors is fine.
func ValidateUpgrade(from int, to string) (int, error) {
	v, err := ParseVersion(to)
	if err != nil {
		return 0, err
	}
	var newer []string
	for _, n := range Versions {
		if n > from {
			newer = append(newer, strconv.Itoa(n))
		}
	}
	if v <= from {
		if len(newer) == 0 {
			return 0, inputErrorf("the database runs PostgreSQL %d, the newest supported major: there is nothing to upgrade to", from)
		}
		what := "a downgrade"
		if v == from {
			what = "the version it runs"
		}
		return 0, inputErrorf("the database runs PostgreSQL %d: %d is %s; upgrades go to a newer major: use %s (to go back after an upgrade, use --revert)",
			from, v, what, strings.Join(newer, " or "))
	}
	return v, nil
}

// writeUpgrade records r on the StatefulSet (nil removes the record).
func writeUpgrade(ctx context.Context, cs kubernetes.Interface, ns, name string, r *UpgradeRecord) error {
	var v any
	if r != nil {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		v = string(b)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{AnnotationUpgrade: v}}})
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: kube.FieldManager}); err != nil {
		return fmt.Errorf("record the upgrade on statefulset %s: %w", name, err)
	}
	return nil
}

// setMajor points the StatefulSet at major v's image (the pod changes when it is next created:
// the database is stopped when this runs).
func setMajor(ctx context.Context, cs kubernetes.Interface, sts *appsv1.StatefulSet, v int) error {
	patch, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{AnnotationVersion: strconv.Itoa(v)}},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []map[string]any{{"name": ContainerName, "image": ImageFor(sts, v)}}}}},
	})
	if _, err := cs.AppsV1().StatefulSets(sts.Namespace).Patch(ctx, sts.Name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: kube.FieldManager}); err != nil {
		return fmt.Errorf("set statefulset %s to PostgreSQL %d: %w", sts.Name, v, err)
	}
	return nil
}

// Finding is one thing the upgrade check found.
type Finding struct {
	// Severity is "blocker" (the upgrade cannot run) or "warning".
	Severity string `json:"severity"`
	// Code names the check: pg_upgrade, extension, setting, replication-slot, md5-password.
	Code     string `json:"code"`
	Database string `json:"database,omitempty"`
	Message  string `json:"message"`
}

// CheckResult is what the upgrade check found.
type CheckResult struct {
	Database string    `json:"database"`
	From     int       `json:"from"`
	To       int       `json:"to"`
	Findings []Finding `json:"findings"`
	// Blocked is set when a finding is a blocker.
	Blocked bool `json:"blocked"`
}

// UpgradeBlockedError says that the check found blockers.
type UpgradeBlockedError struct{ Result *CheckResult }

func (e *UpgradeBlockedError) Error() string {
	var b []string
	for _, f := range e.Result.Findings {
		if f.Severity == "blocker" {
			b = append(b, f.Message)
		}
	}
	return fmt.Sprintf("database %s cannot be upgraded from PostgreSQL %d to %d: %s", e.Result.Database, e.Result.From, e.Result.To, strings.Join(b, "; "))
}

// readyPod is a database's pod when it is Ready.
func readyPod(ctx context.Context, cs kubernetes.Interface, ns, name string) (*corev1.Pod, error) {
	p, err := cs.CoreV1().Pods(ns).Get(ctx, PodName(name), metav1.GetOptions{})
	if err != nil || !kube.PodReady(p) {
		return nil, &NotReadyError{Name: name, Why: DescribeNotReady(ctx, cs, ns, name)}
	}
	return p, nil
}

// CheckUpgrade runs the upgrade check of database name to major to, beside the running
// database; it changes nothing. Blockers make Blocked true (not an error).
func CheckUpgrade(ctx context.Context, c *kube.Client, name string, to int) (*CheckResult, error) {
	cs, ns := c.Clientset, c.Namespace
	sts, err := GetDatabase(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	if _, err := Guard(ctx, cs, ns, name, UpgradeObjects(name)); err != nil {
		return nil, err
	}
	pod, err := readyPod(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	from := VersionOf(sts)
	env := []corev1.EnvVar{
		{Name: "DB_HOST", Value: pod.Status.PodIP},
		{Name: "PGPASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: SuperuserSecretName(name)}, Key: "password"}}},
	}
	p := upgradePodSpec(sts, UpgradeCheckPodName(name), ImageFor(sts, from), ImageFor(sts, to), []string{"check"}, env, pod.Spec.NodeName)
	// A check pod left by a run that was stopped holds findings of its time: never reused.
	if err := deletePod(ctx, cs, ns, p.Name); err != nil {
		return nil, err
	}
	out, err := runUpgradePod(ctx, cs, p)
	if err != nil {
		// The check changes nothing, and leaves nothing behind either.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		_ = deletePod(dctx, cs, ns, p.Name)
		cancel()
		return nil, fmt.Errorf("upgrade check: %w", err)
	}
	res := &CheckResult{Database: name, From: from, To: to, Findings: []Finding{}}
	done := false
	for _, l := range strings.Split(out, "\n") {
		if l == "check done" {
			done = true
		}
		f := strings.Split(l, "\t")
		if len(f) != 5 || f[0] != "finding" {
			continue
		}
		fd := Finding{Severity: f[1], Code: f[2], Message: f[4]}
		if f[3] != "-" {
			fd.Database = f[3]
		}
		res.Findings = append(res.Findings, fd)
		res.Blocked = res.Blocked || fd.Severity == "blocker"
	}
	if !done {
		return nil, fmt.Errorf("database %s: the upgrade check did not finish: %s", name, lastLines(out, 10))
	}
	return res, nil
}

// UpgradeOptions say how UpgradeMajor runs. The caller holds the database's upgrade lock.
type UpgradeOptions struct {
	To int
	// Timeout bounds the wait for the new major to accept connections (0: ctx alone).
	Timeout  time.Duration
	Now      func() time.Time
	Progress Progress
	// AfterStep, when set, is called after each step (tests stop an upgrade there).
	AfterStep func(step string)
}

// Upgraded is what an upgrade did.
type Upgraded struct {
	Record  *UpgradeRecord `json:"upgrade"`
	Check   *CheckResult   `json:"check,omitempty"`
	Resumed bool           `json:"resumed"`
}

// UpgradeFailedError says that an upgrade failed and what state it left: the database back on
// the old major (Reverted) or the data put back as it was (the old major running).
type UpgradeFailedError struct {
	Name     string
	From, To int
	Err      error
	// State is what the database is now, in words; Next the command that goes on from there.
	State string
	Next  string
}

func (e *UpgradeFailedError) Error() string {
	return fmt.Sprintf("upgrade of %s from PostgreSQL %d to %d failed: %v; %s", e.Name, e.From, e.To, e.Err, e.State)
}
func (e *UpgradeFailedError) Unwrap() error { return e.Err }

// UpgradeMajor upgrades database name to major o.To, or finishes an upgrade a stopped run began.
// A new upgrade: checks (blockers stop it with an *UpgradeBlockedError), backs up the old major,
// stops the database, runs pg_upgrade --link in a pod that has both majors' binaries, starts the
// new major, rebuilds the planner statistics in stages while it serves, and takes the new
// major's first full backup. Every step is recorded on the StatefulSet first (AnnotationUpgrade),
// so that a rerun after a kill at any point goes on from there. A failure before the new major
// ran puts the old data back and starts the old major; a new major that does not start is
// reverted from the backup.
func UpgradeMajor(ctx context.Context, c *kube.Client, name string, o UpgradeOptions) (*Upgraded, error) {
	prog := progressOr(o.Progress)
	now := clockOr(o.Now)
	step := func(s string) {
		if o.AfterStep != nil {
			o.AfterStep(s)
		}
	}
	cs, ns := c.Clientset, c.Namespace
	sts, err := GetDatabase(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	if _, err := Guard(ctx, cs, ns, name, UpgradeObjects(name)); err != nil {
		return nil, err
	}
	rec, err := UpgradeOf(sts)
	if err != nil {
		return nil, err
	}
	res := &Upgraded{}
	switch {
	case rec != nil && rec.Phase == UpgradeReverting:
		return nil, &InputError{Msg: fmt.Sprintf("database %s is going back to PostgreSQL %d: finish that first with `stackblaze db upgrade %s --revert`", name, rec.From, name)}
	case rec.InProgress() && rec.To != o.To:
		return nil, &InputError{Msg: fmt.Sprintf("database %s is being upgraded to PostgreSQL %d: rerun with --version %d to finish it, or go back with --revert", name, rec.To, rec.To)}
	case rec.InProgress():
		res.Resumed = true
		prog.Info("Going on with the upgrade from PostgreSQL %d to %d started at %s (last step: %s)", rec.From, rec.To, rec.Started.UTC().Format(time.RFC3339), rec.Phase)
	case rec != nil && rec.Phase == UpgradeDone && rec.To == o.To && VersionOf(sts) == o.To:
		res.Record = rec
		return res, nil
	case rec != nil && rec.Phase == UpgradeDone:
		return nil, &InputError{Msg: fmt.Sprintf("the upgrade of %s from PostgreSQL %d to %d can still be reverted: confirm it with `stackblaze db upgrade %s --finish` (or go back with --revert) before another one", name, rec.From, rec.To, name)}
	default:
		from := VersionOf(sts)
		if _, err := ValidateUpgrade(from, strconv.Itoa(o.To)); err != nil {
			return nil, err
		}
		prog.Start("Checking that %s can go from PostgreSQL %d to %d (pg_upgrade --check on the live data)", name, from, o.To)
		cctx, cancel := context.WithTimeout(ctx, upTimeout(0))
		chk, err := CheckUpgrade(cctx, c, name, o.To)
		if err != nil && cctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("the upgrade check did not finish within %s: %w", upTimeout(0), err)
		}
		cancel()
		stopProgress(prog)
		if err != nil {
			return nil, err
		}
		res.Check = chk
		if chk.Blocked {
			return res, &UpgradeBlockedError{Result: chk}
		}
		prog.Done("Check passed (%d warning(s))", len(chk.Findings))
		rec = &UpgradeRecord{From: from, To: o.To, Started: now().UTC()}
		if err := readClusterSettings(ctx, c, name, rec); err != nil {
			return res, err
		}
		prog.Start("Backing up PostgreSQL %d before the upgrade (the way back)", from)
		t, err := OpenBackups(ctx, c, name)
		if err != nil {
			stopProgress(prog)
			return res, err
		}
		b, err := t.Take(ctx, bk.TypeFull)
		stopProgress(prog)
		if err != nil {
			return res, fmt.Errorf("backup before the upgrade: %w", err)
		}
		rec.Backup, rec.Phase = b.ID, UpgradeBackedUp
		if err := writeUpgrade(ctx, cs, ns, name, rec); err != nil {
			return res, err
		}
		prog.Done("Backup %s of PostgreSQL %d taken", b.ID, from)
		step(UpgradeBackedUp)
	}
	res.Record = rec
	save := func(phase string) error {
		rec.Phase = phase
		return writeUpgrade(ctx, cs, ns, name, rec)
	}

	// putBack undoes a run that did not reach the new major's start: the old data back in place
	// and the old major running. It says upgraded when the run had in fact put the new major in
	// place (it failed after): then the upgrade goes on.
	putBack := func(cause error) (upgraded bool, err error) {
		stopProgress(prog)
		fail := &UpgradeFailedError{Name: name, From: rec.From, To: rec.To, Err: cause,
			State: fmt.Sprintf("the database is stopped, and could not be put back on PostgreSQL %d", rec.From),
			Next:  fmt.Sprintf("stackblaze db upgrade %s --version %d", name, rec.To)}
		p := upgradePodSpec(sts, UpgradePodName(name), ImageFor(sts, rec.From), ImageFor(sts, rec.To), []string{"undo"}, nil, "")
		out, err := runUpgradePod(ctx, cs, p)
		if err != nil {
			return false, fail
		}
		if strings.Contains(out, "upgraded: PGDATA is PostgreSQL") {
			return true, nil
		}
		if err := startOn(ctx, c, sts, rec.From, upTimeout(0)); err != nil {
			fail.State = fmt.Sprintf("the data is back as PostgreSQL %d, but the database did not start (%v)", rec.From, err)
			fail.Next = fmt.Sprintf("stackblaze db status %s", name)
			return false, fail
		}
		_ = writeUpgrade(ctx, cs, ns, name, nil)
		fail.State = fmt.Sprintf("the database is back on PostgreSQL %d with all its data", rec.From)
		return false, fail
	}

	// The pg_upgrade pod starts beside the running database (on its node: the volume is mounted
	// by both for a moment) and prepares what needs no stopped database; only then is the
	// database stopped, and the pod told so.
	var runPod *corev1.Pod
	if !rec.reached(UpgradeUpgraded) {
		node := ""
		if p, err := cs.CoreV1().Pods(ns).Get(ctx, PodName(name), metav1.GetOptions{}); err == nil {
			node = p.Spec.NodeName
		}
		env := []corev1.EnvVar{{Name: "OLD_ENCODING", Value: rec.Encoding}, {Name: "OLD_COLLATE", Value: rec.Collate},
			{Name: "OLD_CTYPE", Value: rec.Ctype}, {Name: "OLD_CHECKSUMS", Value: rec.Checksums}}
		runPod = upgradePodSpec(sts, UpgradePodName(name), ImageFor(sts, rec.From), ImageFor(sts, rec.To), []string{"run"}, env, node)
		prog.Start("Preparing pg_upgrade beside the running database (both majors' binaries, the new cluster)")
		pctx, cancel := context.WithTimeout(ctx, upTimeout(0))
		err := startUpgradePod(pctx, cs, runPod)
		var cur *corev1.Pod
		if err == nil {
			cur, err = watchUpgradePod(pctx, cs, runPod, kube.PodReady)
		}
		if err == nil && cur.Status.Phase == corev1.PodFailed {
			_, err = endUpgradePod(pctx, cs, runPod)
		}
		if err != nil && pctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("pod %s was not ready within %s: %w", runPod.Name, upTimeout(0), err)
		}
		cancel()
		if err != nil {
			stopProgress(prog)
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			if !rec.reached(UpgradeStopped) {
				// Nothing was changed (a run killed while it stopped the database left it at 0
				// replicas: it starts again): the next run starts afresh.
				dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				_ = deletePod(dctx, cs, ns, runPod.Name)
				cancel()
				state := fmt.Sprintf("the database runs PostgreSQL %d unchanged", rec.From)
				if startOn(ctx, c, sts, rec.From, upTimeout(0)) == nil {
					_ = writeUpgrade(ctx, cs, ns, name, nil)
				} else {
					state = fmt.Sprintf("the database's data is PostgreSQL %d unchanged, but it is not running", rec.From)
				}
				return res, &UpgradeFailedError{Name: name, From: rec.From, To: rec.To, Err: err, State: state,
					Next: fmt.Sprintf("stackblaze db upgrade %s --version %d", name, rec.To)}
			}
			if upgraded, perr := putBack(err); !upgraded {
				return res, perr
			}
			if err := save(UpgradeUpgraded); err != nil {
				return res, err
			}
		}
		if err == nil && cur.Status.Phase != corev1.PodSucceeded {
			prog.Done("pg_upgrade prepared in pod %s", runPod.Name)
		}
	}

	if !rec.reached(UpgradeStopped) {
		// A rerun after a kill in this step keeps the first stop's time: the outage began then.
		if rec.Stopped.IsZero() {
			rec.Stopped = now().UTC()
			if err := writeUpgrade(ctx, cs, ns, name, rec); err != nil {
				return res, err
			}
		}
		prog.Start("Stopping %s (the write outage begins)", name)
		if _, err := Scale(ctx, cs, ns, name, 0); err != nil {
			stopProgress(prog)
			return res, err
		}
		err := kube.WaitPodGone(ctx, cs, ns, PodName(name))
		stopProgress(prog)
		if err != nil {
			return res, err
		}
		if err := save(UpgradeStopped); err != nil {
			return res, err
		}
		prog.Done("Database stopped")
		step(UpgradeStopped)
	}

	if !rec.reached(UpgradeUpgraded) {
		prog.Start("Running pg_upgrade --link from %d to %d", rec.From, rec.To)
		// Tell the pod the database is stopped (a pod that already went on ignores it).
		err := kube.Exec(ctx, c, ns, runPod.Name, upgradeContainer, []string{"touch", upgradeWork + "/stopped"}, nil, io.Discard, io.Discard)
		if err != nil {
			if p, gerr := cs.CoreV1().Pods(ns).Get(ctx, runPod.Name, metav1.GetOptions{}); gerr == nil &&
				(p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
				err = nil // it had gone on already: its end says how it went
			}
		}
		if err == nil {
			_, err = endUpgradePod(ctx, cs, runPod)
		}
		if err != nil {
			if ctx.Err() != nil {
				stopProgress(prog)
				return res, ctx.Err()
			}
			if upgraded, perr := putBack(err); !upgraded {
				return res, perr
			}
		}
		if err := save(UpgradeUpgraded); err != nil {
			stopProgress(prog)
			return res, err
		}
		stopProgress(prog)
		prog.Done("pg_upgrade done: the data is PostgreSQL %d (hard links, no copy)", rec.To)
		step(UpgradeUpgraded)
	}

	if !rec.reached(UpgradeStarted) {
		if rec.Phase != UpgradeStarting {
			if err := save(UpgradeStarting); err != nil {
				return res, err
			}
			step(UpgradeStarting)
		}
		prog.Start("Starting %s on PostgreSQL %d", name, rec.To)
		err := startOn(ctx, c, sts, rec.To, o.Timeout)
		stopProgress(prog)
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			prog.Warn("PostgreSQL %d did not start: going back to %d from backup %s", rec.To, rec.From, rec.Backup)
			// The way back waits as long as it takes: the old major has to come back.
			if _, rerr := Revert(ctx, c, name, RevertOptions{Now: now, Progress: prog}); rerr != nil {
				return res, &UpgradeFailedError{Name: name, From: rec.From, To: rec.To, Err: err,
					State: fmt.Sprintf("going back to PostgreSQL %d failed too (%v)", rec.From, rerr),
					Next:  fmt.Sprintf("stackblaze db upgrade %s --revert", name)}
			}
			return res, &UpgradeFailedError{Name: name, From: rec.From, To: rec.To, Err: err,
				State: fmt.Sprintf("the database is back on PostgreSQL %d with its data of the upgrade's start", rec.From),
				Next:  fmt.Sprintf("stackblaze db upgrade %s --version %d", name, rec.To)}
		}
		rec.Up = now().UTC()
		// The pg_upgrade pod upgraded the stanza; a run that went on after it failed there
		// (see putBack) needs it done here. Nothing to do when it matches.
		if _, err := ExecOutput(ctx, c, name, BackupConfig(name).InPod([]string{"stanza-upgrade"})); err != nil {
			return res, fmt.Errorf("upgrade the backup stanza: %w", err)
		}
		if err := save(UpgradeStarted); err != nil {
			return res, err
		}
		prog.Done("PostgreSQL %d accepts connections: writes were refused for %s", rec.To, rec.Outage().Round(100*time.Millisecond))
		step(UpgradeStarted)
	}

	if !rec.reached(UpgradeAnalyzed) {
		prog.Start("Rebuilding the planner statistics in stages (the database serves meanwhile)")
		_, err := ExecOutput(ctx, c, name, []string{"vacuumdb", "--all", "--analyze-in-stages", "--quiet", "-U", "postgres"})
		stopProgress(prog)
		if err != nil {
			return res, fmt.Errorf("rebuild statistics: %w", err)
		}
		if err := save(UpgradeAnalyzed); err != nil {
			return res, err
		}
		prog.Done("Planner statistics rebuilt")
		step(UpgradeAnalyzed)
	}

	if !rec.reached(UpgradeDone) {
		prog.Start("Taking a full backup of PostgreSQL %d (point-in-time recovery on the new major starts here)", rec.To)
		t, err := OpenBackups(ctx, c, name)
		var b bk.Backup
		if err == nil {
			b, err = t.Take(ctx, bk.TypeFull)
		}
		stopProgress(prog)
		if err != nil {
			return res, fmt.Errorf("full backup after the upgrade: %w", err)
		}
		rec.NewBackup = b.ID
		if err := save(UpgradeDone); err != nil {
			return res, err
		}
		prog.Done("Full backup %s of PostgreSQL %d taken", b.ID, rec.To)
		step(UpgradeDone)
	}
	return res, nil
}

// readClusterSettings reads what the new cluster must share with the old one.
func readClusterSettings(ctx context.Context, c *kube.Client, name string, rec *UpgradeRecord) error {
	out, err := ExecOutput(ctx, c, name, []string{"psql", "-X", "-At", "-F", "|", "-d", "postgres", "-U", "postgres", "-c",
		"select pg_encoding_to_char(encoding), datcollate, datctype, current_setting('data_checksums') from pg_database where datname = 'template0'"})
	if err != nil {
		return fmt.Errorf("read the database's locale: %w", err)
	}
	f := strings.Split(strings.TrimSpace(out), "|")
	if len(f) != 4 {
		return fmt.Errorf("read the database's locale: unexpected %q", out)
	}
	rec.Encoding, rec.Collate, rec.Ctype, rec.Checksums = f[0], f[1], f[2], f[3]
	return nil
}

// Loss is what going back to the old major would lose: what was written since the upgrade.
type Loss struct {
	Since    time.Time   `json:"since"`
	Inserted int64       `json:"rowsInserted"`
	Updated  int64       `json:"rowsUpdated"`
	Deleted  int64       `json:"rowsDeleted"`
	Tables   []TableLoss `json:"tables"`
	// Unknown is set when the database could not be asked (it is not running).
	Unknown bool `json:"unknown,omitempty"`
}

// TableLoss is one table's writes since the upgrade.
type TableLoss struct {
	Database string `json:"database"`
	Table    string `json:"table"`
	Inserted int64  `json:"rowsInserted"`
	Updated  int64  `json:"rowsUpdated"`
	Deleted  int64  `json:"rowsDeleted"`
}

// UpgradeLoss reads what was written since the new major started: pg_upgrade does not carry the
// statistics counters over, so the new major's counters are exactly the writes since.
func UpgradeLoss(ctx context.Context, c *kube.Client, name string, rec *UpgradeRecord) *Loss {
	l := &Loss{Since: rec.Stopped, Tables: []TableLoss{}}
	dbs, err := ExecOutput(ctx, c, name, []string{"psql", "-X", "-At", "-d", "postgres", "-U", "postgres", "-c",
		"select datname from pg_database where datallowconn order by 1"})
	if err != nil {
		l.Unknown = true
		return l
	}
	for _, db := range strings.Fields(dbs) {
		out, err := ExecOutput(ctx, c, name, []string{"psql", "-X", "-At", "-F", "|", "-d", db, "-U", "postgres", "-c",
			"select schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del from pg_stat_user_tables where n_tup_ins + n_tup_upd + n_tup_del > 0 order by 1"})
		if err != nil {
			l.Unknown = true
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Split(line, "|")
			if len(f) != 4 {
				continue
			}
			t := TableLoss{Database: db, Table: f[0]}
			t.Inserted, _ = strconv.ParseInt(f[1], 10, 64)
			t.Updated, _ = strconv.ParseInt(f[2], 10, 64)
			t.Deleted, _ = strconv.ParseInt(f[3], 10, 64)
			l.Tables = append(l.Tables, t)
			l.Inserted += t.Inserted
			l.Updated += t.Updated
			l.Deleted += t.Deleted
		}
	}
	return l
}

// RevertOptions say how Revert runs.
type RevertOptions struct {
	Timeout  time.Duration
	Now      func() time.Time
	Progress Progress
}

// NoUpgradeError says that a database has no upgrade to revert or finish (Why says what it has).
type NoUpgradeError struct{ Name, Why string }

func (e *NoUpgradeError) Error() string { return fmt.Sprintf("database %s: %s", e.Name, e.Why) }

// upgradeToRevert reads the upgrade that --revert or --finish acts on.
func upgradeToRevert(ctx context.Context, cs kubernetes.Interface, ns, name string) (*appsv1.StatefulSet, *UpgradeRecord, error) {
	sts, err := GetDatabase(ctx, cs, ns, name)
	if err != nil {
		return nil, nil, err
	}
	rec, err := UpgradeOf(sts)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case rec == nil:
		return nil, nil, &NoUpgradeError{Name: name, Why: "it was never upgraded"}
	case rec.Phase == UpgradeFinished:
		return nil, nil, &NoUpgradeError{Name: name, Why: fmt.Sprintf("its upgrade from PostgreSQL %d to %d was finished at %s: there is no way back any more (a backup of %d can still be restored by hand with pgBackRest)",
			rec.From, rec.To, rec.Finished.UTC().Format(time.RFC3339), rec.From)}
	case rec.Phase == UpgradeReverted:
		return nil, nil, &NoUpgradeError{Name: name, Why: fmt.Sprintf("its upgrade to PostgreSQL %d was reverted at %s: it runs %d", rec.To, rec.Reverted.UTC().Format(time.RFC3339), rec.From)}
	}
	return sts, rec, nil
}

// PendingUpgrade is the upgrade that --revert would undo, or a *NoUpgradeError.
func PendingUpgrade(ctx context.Context, cs kubernetes.Interface, ns, name string) (*UpgradeRecord, error) {
	_, rec, err := upgradeToRevert(ctx, cs, ns, name)
	return rec, err
}

// Revert gives database name back its old major after an upgrade that was not finished. Before
// the new major ever ran, the old data is simply put back. After, the old major's backup taken
// before the upgrade is restored with all the WAL archived up to the moment the database stopped
// for the upgrade: what was written since is lost (UpgradeLoss says what). A rerun after a kill
// goes on.
func Revert(ctx context.Context, c *kube.Client, name string, o RevertOptions) (*UpgradeRecord, error) {
	prog := progressOr(o.Progress)
	now := clockOr(o.Now)
	cs, ns := c.Clientset, c.Namespace
	sts, rec, err := upgradeToRevert(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	if _, err := Guard(ctx, cs, ns, name, UpgradeObjects(name)); err != nil {
		return nil, err
	}
	if rec.Phase == UpgradeBackedUp {
		// Nothing was changed yet (a run killed while it stopped the database left it at 0
		// replicas): the prepared pod goes, and the old major runs on.
		prog.Start("Starting %s on PostgreSQL %d again", name, rec.From)
		err := deletePod(ctx, cs, ns, UpgradePodName(name))
		if err == nil {
			err = startOn(ctx, c, sts, rec.From, upTimeout(o.Timeout))
		}
		stopProgress(prog)
		if err != nil {
			return nil, fmt.Errorf("start PostgreSQL %d again: %w", rec.From, err)
		}
		prog.Done("PostgreSQL %d accepts connections", rec.From)
	} else {
		if rec.Phase != UpgradeReverting {
			// Before pg_upgrade put the new major in place the old data is simply put back;
			// after, only the backup gives the old major back.
			rec.RevertBy = "backup"
			if rec.Phase == UpgradeStopped {
				rec.RevertBy = "undo"
			}
			rec.Phase = UpgradeReverting
			if err := writeUpgrade(ctx, cs, ns, name, rec); err != nil {
				return nil, err
			}
		}
		if !rec.Restored {
			prog.Start("Stopping %s", name)
			if _, err := Scale(ctx, cs, ns, name, 0); err != nil {
				stopProgress(prog)
				return nil, err
			}
			err := kube.WaitPodGone(ctx, cs, ns, PodName(name))
			stopProgress(prog)
			if err != nil {
				return nil, err
			}
			prog.Done("Database stopped")
			newImage := ImageFor(sts, max(VersionOf(sts), rec.To))
			if rec.RevertBy == "undo" {
				prog.Start("Putting the PostgreSQL %d data back", rec.From)
				p := upgradePodSpec(sts, UpgradePodName(name), ImageFor(sts, rec.From), newImage, []string{"undo"}, nil, "")
				out, err := runUpgradePod(ctx, cs, p)
				stopProgress(prog)
				if err != nil {
					return nil, fmt.Errorf("go back to PostgreSQL %d: %w", rec.From, err)
				}
				if strings.Contains(out, "upgraded: PGDATA is PostgreSQL") {
					// pg_upgrade had finished: the old data is gone.
					rec.RevertBy = "backup"
					if err := writeUpgrade(ctx, cs, ns, name, rec); err != nil {
						return nil, err
					}
				}
			}
			if rec.RevertBy == "backup" {
				prog.Start("Restoring PostgreSQL %d from backup %s and the WAL it wrote until the upgrade", rec.From, rec.Backup)
				p := upgradePodSpec(sts, UpgradePodName(name), ImageFor(sts, rec.From), newImage, []string{"restore", rec.Backup}, nil, "")
				_, err := runUpgradePod(ctx, cs, p)
				stopProgress(prog)
				if err != nil {
					return nil, fmt.Errorf("go back to PostgreSQL %d: %w", rec.From, err)
				}
			}
			rec.Restored = true
			if err := writeUpgrade(ctx, cs, ns, name, rec); err != nil {
				return nil, err
			}
			prog.Done("Data of PostgreSQL %d in place", rec.From)
		}
		prog.Start("Starting %s on PostgreSQL %d", name, rec.From)
		err := startOn(ctx, c, sts, rec.From, upTimeout(o.Timeout))
		stopProgress(prog)
		if err != nil {
			return nil, fmt.Errorf("start PostgreSQL %d again: %w", rec.From, err)
		}
		prog.Done("PostgreSQL %d accepts connections", rec.From)
		if rec.RevertBy == "backup" {
			prog.Start("Taking a full backup of PostgreSQL %d", rec.From)
			t, err := OpenBackups(ctx, c, name)
			if err == nil {
				_, err = t.Take(ctx, bk.TypeFull)
			}
			stopProgress(prog)
			if err != nil {
				return nil, fmt.Errorf("full backup after going back: %w", err)
			}
			prog.Done("Full backup of PostgreSQL %d taken", rec.From)
		}
		_, _ = ExecOutput(ctx, c, name, []string{"sh", "-c", `d=$(dirname "$PGDATA"); rm -rf "$d/pgdata.before-revert" "$d/upgrade-wal"`})
	}
	rec.Phase, rec.Reverted = UpgradeReverted, now().UTC()
	if err := writeUpgrade(ctx, cs, ns, name, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// startOn points the StatefulSet at major v's image, starts it (one replica) and waits, up to
// timeout, until the server is up and out of recovery.
func startOn(ctx context.Context, c *kube.Client, sts *appsv1.StatefulSet, v int, timeout time.Duration) error {
	if err := setMajor(ctx, c.Clientset, sts, v); err != nil {
		return err
	}
	if _, err := Scale(ctx, c.Clientset, c.Namespace, sts.Name, 1); err != nil {
		return err
	}
	return WaitPrimary(ctx, c, sts.Name, timeout)
}

// WaitPrimary waits, up to timeout (0: ctx alone), until the database's pod is Ready and its
// server out of recovery; a pod that is not Ready in time is a *NotReadyError.
func WaitPrimary(ctx context.Context, c *kube.Client, name string, timeout time.Duration) error {
	wctx, cancel := context.WithCancel(ctx)
	if timeout > 0 {
		cancel()
		wctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	if _, err := kube.WaitPodReady(wctx, c.Clientset, c.Namespace, PodName(name)); err != nil {
		if ctx.Err() == nil && wctx.Err() != nil {
			return &NotReadyError{Name: name, Timeout: timeout, Why: DescribeNotReady(ctx, c.Clientset, c.Namespace, name)}
		}
		return err
	}
	for {
		out, err := ExecOutput(wctx, c, name, []string{"psql", "-X", "-At", "-d", "postgres", "-c", "select pg_is_in_recovery()"})
		if err == nil && strings.TrimSpace(out) == "f" {
			return nil
		}
		select {
		case <-wctx.Done():
			return errors.Join(fmt.Errorf("database %s is still recovering", name), wctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// FinishUpgrade confirms an upgrade: the way back closes.
func FinishUpgrade(ctx context.Context, c *kube.Client, name string, now time.Time) (*UpgradeRecord, error) {
	_, rec, err := upgradeToRevert(ctx, c.Clientset, c.Namespace, name)
	if err != nil {
		return nil, err
	}
	if rec.Phase != UpgradeDone {
		return nil, &NoUpgradeError{Name: name, Why: fmt.Sprintf("its upgrade to PostgreSQL %d has not finished (last step: %s): run `stackblaze db upgrade %s --version %d` first", rec.To, rec.Phase, name, rec.To)}
	}
	rec.Phase, rec.Finished = UpgradeFinished, now.UTC()
	if err := writeUpgrade(ctx, c.Clientset, c.Namespace, name, rec); err != nil {
		return nil, err
	}
	// The old major's last WAL, kept for the way back, is of no use any more (a stopped database
	// keeps it until its next upgrade).
	_, _ = ExecOutput(ctx, c, name, []string{"sh", "-c", `rm -rf "$(dirname "$PGDATA")/upgrade-wal"`})
	return rec, nil
}

// stopProgress ends a step's spinner when the step fails (the command layer's Progress has Stop).
func stopProgress(p Progress) {
	if s, ok := p.(interface{ Stop() }); ok {
		s.Stop()
	}
}

// upTimeout is how long a step waits for a pod when the caller set no limit (and the check and
// the preparation always: --timeout is the new major's start): long enough for a slow image
// pull, short enough that a pod that can never start is reported.
func upTimeout(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return 10 * time.Minute
}
