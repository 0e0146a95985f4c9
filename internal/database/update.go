package database

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/stackblaze/stackblaze/internal/backup"
	"github.com/stackblaze/stackblaze/internal/kube"
)

// Updated is what a plan change did.
type Updated struct {
	Database string `json:"database"`
	From     string `json:"from"`
	To       string `json:"to"`
	// Changes say, one per line, what changed: resources, settings, point-in-time recovery.
	Changes []string `json:"changes"`
	// Restarted is set when the database's pod was replaced to take the plan; Outage is then how
	// long it did not take connections, from the old server's stop to the new one's readiness.
	Restarted     bool    `json:"restarted"`
	OutageSeconds float64 `json:"outageSeconds,omitempty"`
}

// UpdateOptions say how UpdatePlan runs.
type UpdateOptions struct {
	Progress Progress
	// Timeout bounds the wait for the database on its new plan (0: 10 minutes).
	Timeout time.Duration
	Now     func() time.Time
}

// planKeys are the server settings a plan owns: its memory settings and archive_timeout.
func planKeys() map[string]bool {
	k := map[string]bool{"archive_timeout": true}
	for _, p := range Plans {
		for _, kv := range p.Settings {
			name, _, _ := strings.Cut(kv, "=")
			k[name] = true
		}
	}
	return k
}

// PlanArgs rewrites a database container's arguments (ServerArgs) for plan p: the settings a plan
// owns are replaced by p's, the product's own (ServerSettings) that are missing are added,
// everything else stays as it is, in its place. ServerArgs of a spec on
// plan A rewritten for plan B equal ServerArgs of the same spec on plan B.
func PlanArgs(args []string, p Plan) []string {
	keys := planKeys()
	out := make([]string, 0, len(args)+2*len(p.Settings)+2)
	at, afterArchive := -1, -1
	for i := 0; i < len(args); i++ {
		if args[i] != "-c" || i+1 == len(args) {
			out = append(out, args[i])
			continue
		}
		kv := args[i+1]
		i++
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case keys[name]:
			if at < 0 && name != "archive_timeout" {
				at = len(out)
			}
			continue
		case name == "wal_level" && at < 0:
			// A database created before plans had settings: they go before the archive's.
			at = len(out)
		}
		out = append(out, "-c", kv)
		if name == "archive_command" {
			afterArchive = len(out)
		}
	}
	var archive []string
	if p.PITR {
		for _, kv := range (backup.Config{}).ServerSettings(true) {
			if strings.HasPrefix(kv, "archive_timeout=") {
				archive = []string{"-c", kv}
			}
		}
	}
	if afterArchive < 0 {
		afterArchive = len(out)
	}
	out = slices.Insert(out, afterArchive, archive...)
	if at < 0 || at > afterArchive {
		at = afterArchive
	}
	var settings []string
	for _, kv := range p.Settings {
		settings = append(settings, "-c", kv)
	}
	out = slices.Insert(out, at, settings...)
	// The product's own settings that a database made by an older version lacks come first.
	var missing []string
	for _, kv := range ServerSettings {
		name, _, _ := strings.Cut(kv, "=")
		if !hasSetting(out, name) {
			missing = append(missing, "-c", kv)
		}
	}
	return slices.Insert(out, 0, missing...)
}

// hasSetting tells whether args (-c name=value pairs among others) set name.
func hasSetting(args []string, name string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-c" && strings.HasPrefix(args[i+1], name+"=") {
			return true
		}
	}
	return false
}

// planTemplate is what plan p makes of a database's pod template: its container's resources and
// arguments, and the size of /dev/shm.
type planTemplate struct {
	Args      []string
	Resources corev1.ResourceRequirements
	Shm       resource.Quantity
}

func planTemplateOf(tpl *corev1.PodTemplateSpec, p Plan) (cur, next planTemplate, err error) {
	c := findContainer(tpl.Spec.Containers, ContainerName)
	if c == nil {
		return cur, next, fmt.Errorf("the database's StatefulSet has no %s container", ContainerName)
	}
	cur.Args, cur.Resources = c.Args, c.Resources
	for _, v := range tpl.Spec.Volumes {
		if v.Name == "shm" && v.EmptyDir != nil && v.EmptyDir.SizeLimit != nil {
			cur.Shm = *v.EmptyDir.SizeLimit
		}
	}
	next.Args = PlanArgs(c.Args, p)
	next.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(p.CPURequest), corev1.ResourceMemory: resource.MustParse(p.MemoryRequest)},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(p.CPULimit), corev1.ResourceMemory: resource.MustParse(p.MemoryLimit)},
	}
	next.Shm = resource.MustParse(p.SharedMemory)
	return cur, next, nil
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// planChanges says in words what moving from cur to next changes.
func planChanges(from, to Plan, cur, next planTemplate) []string {
	var ch []string
	q := func(l corev1.ResourceList, r corev1.ResourceName) string {
		v, ok := l[r]
		if !ok {
			return "none"
		}
		return v.String()
	}
	for _, r := range []struct {
		what string
		l    func(corev1.ResourceRequirements) corev1.ResourceList
		name corev1.ResourceName
	}{
		{"CPU request", func(r corev1.ResourceRequirements) corev1.ResourceList { return r.Requests }, corev1.ResourceCPU},
		{"CPU limit", func(r corev1.ResourceRequirements) corev1.ResourceList { return r.Limits }, corev1.ResourceCPU},
		{"memory", func(r corev1.ResourceRequirements) corev1.ResourceList { return r.Limits }, corev1.ResourceMemory},
	} {
		if a, b := q(r.l(cur.Resources), r.name), q(r.l(next.Resources), r.name); a != b {
			ch = append(ch, fmt.Sprintf("%s %s → %s", r.what, a, b))
		}
	}
	if cur.Shm.Cmp(next.Shm) != 0 {
		ch = append(ch, fmt.Sprintf("/dev/shm %s → %s", cur.Shm.String(), next.Shm.String()))
	}
	if !slices.Equal(cur.Args, next.Args) {
		ch = append(ch, "settings "+strings.Join(to.Settings, ", "))
	}
	switch {
	case to.PITR && !from.PITR:
		ch = append(ch, fmt.Sprintf("point-in-time recovery on: WAL archived at least every %d minutes", backup.ArchiveTimeout/60))
	case !to.PITR && from.PITR:
		ch = append(ch, "point-in-time recovery off: WAL is still archived for the daily backups, without a time limit; restores are by backup only")
	}
	return ch
}

// UpdatePlan moves database name to plan (ValidatePlan: an *InputError before any change): its
// container's CPU and memory, /dev/shm, and the plan's server settings (memory, and WAL archived
// at least every 5 minutes with point-in-time recovery). A running database is restarted once,
// after a checkpoint so that its shutdown is short; a stopped one takes the plan when it starts.
// A plan the namespace's ResourceQuota or LimitRange would refuse is refused before any change
// (an *InputError); a new pod that cannot be scheduled puts the old plan back.
func UpdatePlan(ctx context.Context, c *kube.Client, name, plan string, o UpdateOptions) (*Updated, error) {
	prog := progressOr(o.Progress)
	now := clockOr(o.Now)
	cs, ns := c.Clientset, c.Namespace
	to, err := ValidatePlan(plan)
	if err != nil {
		return nil, err
	}
	// A resize killed while it replaced the StatefulSet finishes first.
	if err := finishReplacement(ctx, cs, ns, name); err != nil {
		return nil, err
	}
	sts, err := GetDatabase(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	if rec, err := UpgradeOf(sts); err != nil {
		return nil, err
	} else if rec.InProgress() {
		return nil, inputErrorf("database %s is in the middle of an upgrade to PostgreSQL %d (last step: %s): finish it or revert it with `stackblaze db upgrade %s` first", name, rec.To, rec.Phase, name)
	}
	from, _ := LookupPlan(sts.Annotations[AnnotationPlan])
	cur, next, err := planTemplateOf(&sts.Spec.Template, to)
	if err != nil {
		return nil, err
	}
	res := &Updated{Database: name, From: sts.Annotations[AnnotationPlan], To: to.Name, Changes: planChanges(from, to, cur, next)}
	if res.From == to.Name && len(res.Changes) == 0 {
		return res, nil
	}
	if err := checkPlanFits(ctx, cs, ns, name, cur, next); err != nil {
		return nil, err
	}
	replicas := int32(1)
	if sts.Spec.Replicas != nil {
		replicas = *sts.Spec.Replicas
	}
	if replicas == 0 {
		prog.Start("Setting plan %s (the database is stopped: it takes it when it starts)", to.Name)
		err := patchPlan(ctx, cs, ns, name, to.Name, next)
		stopProgress(prog)
		if err != nil {
			return nil, err
		}
		prog.Done("Database %s is on plan %s", name, to.Name)
		return res, nil
	}
	old, err := readyPod(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	// What the shutdown would write, written now, while the database still serves.
	prog.Start("Writing a checkpoint, so that the restart is short")
	cctx, ccancel := context.WithTimeout(ctx, time.Minute)
	_, _ = ExecOutput(cctx, c, name, []string{"psql", "-X", "-q", "-d", "postgres", "-c", "checkpoint"})
	ccancel()
	prog.Done("Checkpoint written")

	prog.Start("Restarting %s on plan %s", name, to.Name)
	if err := patchPlan(ctx, cs, ns, name, to.Name, next); err != nil {
		stopProgress(prog)
		return nil, err
	}
	stopped := now()
	wctx, cancel := context.WithTimeout(ctx, upTimeout(o.Timeout))
	defer cancel()
	if err := waitReplaced(wctx, cs, ns, name, old.UID); err != nil {
		stopProgress(prog)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The old plan back, so that the database runs again.
		prog.Start("Plan %s did not start: putting plan %s back", to.Name, res.From)
		if perr := patchPlan(ctx, cs, ns, name, res.From, cur); perr != nil {
			stopProgress(prog)
			return nil, fmt.Errorf("database %s did not start on plan %s (%v), and plan %s could not be put back: %w", name, to.Name, err, res.From, perr)
		}
		// A StatefulSet whose pod never became ready does not replace it (OrderedReady): the
		// pod of the new plan, ours to remove, goes, and the controller makes one of the old.
		if p, gerr := cs.CoreV1().Pods(ns).Get(ctx, PodName(name), metav1.GetOptions{}); gerr == nil && p.UID != old.UID && !kube.PodReady(p) {
			uid := p.UID
			_ = cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		}
		if werr := WaitPrimary(ctx, c, name, upTimeout(o.Timeout)); werr != nil {
			stopProgress(prog)
			return nil, fmt.Errorf("database %s did not start on plan %s (%v), and not yet on plan %s again: %w", name, to.Name, err, res.From, werr)
		}
		prog.Done("Database %s runs on plan %s again", name, res.From)
		return nil, &PlanNotAppliedError{Name: name, Plan: to.Name, Back: res.From, Err: err}
	}
	if err := WaitPrimary(ctx, c, name, upTimeout(o.Timeout)); err != nil {
		stopProgress(prog)
		return nil, err
	}
	res.Restarted, res.OutageSeconds = true, now().Sub(stopped).Seconds()
	prog.Done("Database %s runs on plan %s", name, to.Name)
	return res, nil
}

// PlanNotAppliedError says that the database could not start on a plan and runs on its old one.
type PlanNotAppliedError struct {
	Name, Plan, Back string
	Err              error
}

func (e *PlanNotAppliedError) Error() string {
	return fmt.Sprintf("database %s could not start on plan %s: %v; it runs on plan %s again", e.Name, e.Plan, e.Err, e.Back)
}

func (e *PlanNotAppliedError) Unwrap() error { return e.Err }

// patchPlan writes plan (its name and template t) on the StatefulSet: a strategic merge patch of
// the database container's arguments and resources and of the shm volume, nothing else.
func patchPlan(ctx context.Context, cs kubernetes.Interface, ns, name, plan string, t planTemplate) error {
	shm := t.Shm.String()
	patch, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{AnnotationPlan: plan}},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []map[string]any{{"name": ContainerName, "args": t.Args, "resources": t.Resources}},
			"volumes":    []map[string]any{{"name": "shm", "emptyDir": map[string]any{"medium": string(corev1.StorageMediumMemory), "sizeLimit": shm}}},
		}}},
	})
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: kube.FieldManager}); err != nil {
		return fmt.Errorf("set plan %s on statefulset %s: %w", plan, name, err)
	}
	return nil
}

// waitReplaced watches until the StatefulSet has replaced pod old with a Ready one; a replacement
// the scheduler cannot place is an error at once.
func waitReplaced(ctx context.Context, cs kubernetes.Interface, ns, name string, old types.UID) error {
	_, err := watchtools.UntilWithSync(ctx, kube.PodListWatch(cs, ns, PodName(name)), &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok || ev.Type == watch.Deleted || p.UID == old {
			return false, nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return false, fmt.Errorf("its pod cannot be scheduled: %s", c.Message)
			}
		}
		return kube.PodReady(p), nil
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("its pod was not ready in time: %s", strings.Join(DescribeNotReady(context.WithoutCancel(ctx), cs, ns, name), "; "))
	}
	return err
}

// checkPlanFits refuses, before any change, a plan that the namespace's ResourceQuotas or
// LimitRanges would not admit: the pod would not be created, and the database would be down.
// Without permission to read them, the check is skipped (the pod's start is then the check).
func checkPlanFits(ctx context.Context, cs kubernetes.Interface, ns, name string, cur, next planTemplate) error {
	if lrs, err := cs.CoreV1().LimitRanges(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, lr := range lrs.Items {
			for _, l := range lr.Spec.Limits {
				if l.Type != corev1.LimitTypeContainer && l.Type != corev1.LimitTypePod {
					continue
				}
				for r, max := range l.Max {
					if v, ok := next.Resources.Limits[r]; ok && v.Cmp(max) > 0 {
						return inputErrorf("the plan's %s limit %s is more than LimitRange %s allows in namespace %s (%s): choose a smaller plan, or ask a cluster admin to raise it", r, v.String(), lr.Name, ns, max.String())
					}
				}
			}
		}
	}
	quotas, err := cs.CoreV1().ResourceQuotas(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	// The running pod's share is already counted in what the quota says is used.
	running := false
	if p, err := cs.CoreV1().Pods(ns).Get(ctx, PodName(name), metav1.GetOptions{}); err == nil && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
		running = true
	}
	for _, q := range quotas.Items {
		for r, hard := range q.Status.Hard {
			var l func(corev1.ResourceRequirements) corev1.ResourceList
			var res corev1.ResourceName
			switch r {
			case corev1.ResourceLimitsMemory:
				l, res = func(x corev1.ResourceRequirements) corev1.ResourceList { return x.Limits }, corev1.ResourceMemory
			case corev1.ResourceLimitsCPU:
				l, res = func(x corev1.ResourceRequirements) corev1.ResourceList { return x.Limits }, corev1.ResourceCPU
			case corev1.ResourceRequestsMemory, corev1.ResourceMemory:
				l, res = func(x corev1.ResourceRequirements) corev1.ResourceList { return x.Requests }, corev1.ResourceMemory
			case corev1.ResourceRequestsCPU, corev1.ResourceCPU:
				l, res = func(x corev1.ResourceRequirements) corev1.ResourceList { return x.Requests }, corev1.ResourceCPU
			default:
				continue
			}
			want := l(next.Resources)[res]
			total := q.Status.Used[r].DeepCopy()
			if running {
				total.Sub(l(cur.Resources)[res])
			}
			total.Add(want)
			if total.Cmp(hard) > 0 {
				return inputErrorf("the plan needs %s %s, and ResourceQuota %s allows %s in namespace %s, of which %s is used: choose a smaller plan, or ask a cluster admin to raise the quota", r, want.String(), q.Name, hard.String(), ns, usedString(q.Status.Used, r))
			}
		}
	}
	return nil
}

func usedString(l corev1.ResourceList, r corev1.ResourceName) string {
	v := l[r]
	return v.String()
}
