package database

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/stackblaze/stackblaze/internal/kube"
)

// Autogrow defaults and limits.
const (
	// AutogrowAt is the data volume's use, in percent, at which autogrow grows it.
	AutogrowAt    = 80
	MinAutogrowAt = 50
	MaxAutogrowAt = 95
	// AutogrowEvery is how often the cluster looks at the volume's use.
	AutogrowEvery    = 5 * time.Minute
	MaxAutogrowEvery = time.Hour
	// AnnotationAutogrow, on the data volume claim, records the last growth autogrow made.
	AnnotationAutogrow = "stackblaze.io/autogrow"
)

// AutogrowName names autogrow's CronJob, its ServiceAccount, Role and RoleBinding.
func AutogrowName(name string) string { return name + "-autogrow" }

// AutogrowObjects are what autogrow is made of.
func AutogrowObjects(name string) []ObjectRef {
	n := AutogrowName(name)
	return []ObjectRef{{"ServiceAccount", n}, {"Role", n}, {"RoleBinding", n}, {"CronJob", n}}
}

// Autogrow is a database's autogrow policy: every Every, when the data volume is At percent used
// or more, grow it by half (at least 1Gi), never past Max.
type Autogrow struct {
	Max   resource.Quantity
	At    int
	Every time.Duration
	// Image is the stackblaze image the CronJob runs (BackupImage).
	Image string
}

// ValidateAutogrowCheck checks when autogrow looks and grows: at percent used, every every.
func ValidateAutogrowCheck(at int, every time.Duration) error {
	if at < MinAutogrowAt || at > MaxAutogrowAt {
		return inputErrorf("--at %d is not allowed: use a percentage of the volume's use from %d to %d", at, MinAutogrowAt, MaxAutogrowAt)
	}
	if every < time.Minute || every > MaxAutogrowEvery || every%time.Minute != 0 {
		return inputErrorf("--every %s is not allowed: use whole minutes from 1m to 60m", every)
	}
	return nil
}

// ValidateAutogrow checks a policy for a database of size current.
func ValidateAutogrow(current resource.Quantity, max string, at int, every time.Duration) (Autogrow, error) {
	a := Autogrow{At: at, Every: every}
	if err := ValidateAutogrowCheck(at, every); err != nil {
		return a, err
	}
	if max == "" {
		return a, inputErrorf("--max is required with --auto: the largest size the cluster may grow the volume to, up to %dGi", MaxStorageGi)
	}
	q, _, err := ParseStorage(max)
	if err != nil {
		return a, inputErrorf("--max: %v", err)
	}
	if q.Cmp(current) <= 0 {
		return a, inputErrorf("--max %s is not more than the volume's %s: autogrow needs room to grow, use more than %s", q.String(), current.String(), current.String())
	}
	a.Max = q
	return a, nil
}

// NextSize is the size autogrow grows a volume of size cur to: half as much again, rounded up to
// a whole GiB, at least 1Gi more, never past max. ok is false when cur is max already.
func NextSize(cur, max resource.Quantity) (resource.Quantity, bool) {
	gi := (cur.Value() + (1 << 30) - 1) >> 30
	next := (gi*3 + 1) / 2
	if next < gi+1 {
		next = gi + 1
	}
	if m := max.Value() >> 30; next > m {
		next = m
	}
	q := resource.MustParse(strconv.FormatInt(next, 10) + "Gi")
	return q, q.Cmp(cur) > 0
}

// AutogrowRoleRules are all the autogrow job's ServiceAccount may do: read its database's
// StatefulSet, read its disk use in its pod (pods/exec) or, when the server stopped, its log;
// read, watch and grow its two volume claims. It cannot change the StatefulSet or any pod.
func AutogrowRoleRules(name string) []*rbacv1ac.PolicyRuleApplyConfiguration {
	return []*rbacv1ac.PolicyRuleApplyConfiguration{
		rbacv1ac.PolicyRule().WithAPIGroups("apps").WithResources("statefulsets").WithVerbs("get").WithResourceNames(name),
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("pods/exec").WithVerbs("create").WithResourceNames(PodName(name)),
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("pods/log").WithVerbs("get").WithResourceNames(PodName(name)),
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("persistentvolumeclaims").WithVerbs("get", "list", "watch", "patch").
			WithResourceNames(PVCName(name), BackupPVCName(name)),
	}
}

// AutogrowArgs are the command the autogrow job runs: one check, and a growth when it is due.
func AutogrowArgs(ns, name string, a Autogrow) []string {
	return []string{"db", "resize", name, "--if-used", strconv.Itoa(a.At), "--max", a.Max.String(), "--namespace", ns}
}

// ApplyAutogrow writes database name's autogrow: a CronJob that runs AutogrowArgs every a.Every,
// as a ServiceAccount bound to a Role of AutogrowRoleRules. before is what Guard read of
// AutogrowObjects.
func ApplyAutogrow(ctx context.Context, cs kubernetes.Interface, ns, name string, a Autogrow, before Found) ([]Change, error) {
	labels := Labels(name)
	labels[LabelName] = "stackblaze-autogrow"
	return applyCLIJob(ctx, cs, ns, name, cliJob{
		Name: AutogrowName(name), Container: "autogrow", Cron: everyCron(a.Every), Image: a.Image,
		Args: AutogrowArgs(ns, name, a), Rules: AutogrowRoleRules(name), PodLabels: labels,
		StartingDeadline: int64(a.Every.Seconds()), ActiveDeadline: 1800, Memory: "128Mi",
	}, before)
}

// everyCron is a schedule that runs every d (whole minutes).
func everyCron(d time.Duration) string {
	m := int(d / time.Minute)
	if m >= 60 {
		return "0 * * * *"
	}
	return fmt.Sprintf("*/%d * * * *", m)
}

// RemoveAutogrow deletes database name's autogrow objects (only those that are its own: Guard
// checked them). It returns the objects it deleted.
func RemoveAutogrow(ctx context.Context, cs kubernetes.Interface, ns, name string, found Found) ([]ObjectRef, error) {
	n := AutogrowName(name)
	var gone []ObjectRef
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	for _, step := range []struct {
		kind string
		del  func() error
	}{
		{"CronJob", func() error { return cs.BatchV1().CronJobs(ns).Delete(ctx, n, opts) }},
		{"RoleBinding", func() error { return cs.RbacV1().RoleBindings(ns).Delete(ctx, n, opts) }},
		{"Role", func() error { return cs.RbacV1().Roles(ns).Delete(ctx, n, opts) }},
		{"ServiceAccount", func() error { return cs.CoreV1().ServiceAccounts(ns).Delete(ctx, n, opts) }},
	} {
		ref := ObjectRef{step.kind, n}
		if _, ok := found[ref]; !ok {
			continue
		}
		if err := step.del(); err != nil && !apierrors.IsNotFound(err) {
			return gone, fmt.Errorf("delete %s: %w", ref, err)
		}
		gone = append(gone, ref)
	}
	return gone, nil
}

// Growth is one growth autogrow made, recorded on the data volume claim.
type Growth struct {
	Time        time.Time `json:"time"`
	From        string    `json:"from"`
	To          string    `json:"to"`
	UsedPercent float64   `json:"usedPercent"`
}

// AutogrowStatus is what status says about autogrow.
type AutogrowStatus struct {
	At    int    `json:"at"`
	Max   string `json:"max"`
	Every string `json:"every"`
	// Last is the last growth it made (absent when none).
	Last *Growth `json:"last,omitempty"`
	// LastCheck is when the job last ran to the end; Failing is set when a later run failed.
	LastCheck *time.Time `json:"lastCheck,omitempty"`
	Failing   bool       `json:"failing,omitempty"`
}

// autogrowOf reads a database's autogrow from its CronJob and data volume claim (nil without
// a CronJob).
func autogrowOf(cj *batchv1.CronJob, pvc *corev1.PersistentVolumeClaim) *AutogrowStatus {
	if cj == nil {
		return nil
	}
	a := &AutogrowStatus{Every: cronEvery(cj.Spec.Schedule)}
	for _, c := range cj.Spec.JobTemplate.Spec.Template.Spec.Containers {
		for i := 0; i+1 < len(c.Args); i++ {
			switch c.Args[i] {
			case "--if-used":
				a.At, _ = strconv.Atoi(c.Args[i+1])
			case "--max":
				a.Max = c.Args[i+1]
			}
		}
	}
	if t := cj.Status.LastSuccessfulTime; t != nil {
		a.LastCheck = &t.Time
	}
	// A run scheduled after the last success that is not active any more has failed.
	if s := cj.Status.LastScheduleTime; s != nil && len(cj.Status.Active) == 0 && (a.LastCheck == nil || a.LastCheck.Before(s.Time)) {
		a.Failing = true
	}
	if pvc != nil {
		if v, ok := pvc.Annotations[AnnotationAutogrow]; ok {
			g := &Growth{}
			if json.Unmarshal([]byte(v), g) == nil {
				a.Last = g
			}
		}
	}
	return a
}

func cronEvery(s string) string {
	if strings.HasPrefix(s, "*/") {
		if m, ok := strings.CutSuffix(strings.TrimPrefix(s, "*/"), " * * * *"); ok {
			return m + "m"
		}
	}
	if s == "0 * * * *" {
		return "60m"
	}
	return s
}

// Grown is what one autogrow check did.
type Grown struct {
	Database    string  `json:"database"`
	UsedPercent float64 `json:"usedPercent"`
	// Full is set when the server stopped because its volume is full.
	Full bool   `json:"full,omitempty"`
	Size string `json:"size"`
	Max  string `json:"max"`
	// Grew is set when the check grew the volumes (then To is the new size); AtMax when they
	// should have grown but are at the maximum already.
	Grew  bool   `json:"grew"`
	To    string `json:"to,omitempty"`
	AtMax bool   `json:"atMax,omitempty"`
}

// GrowIfUsed is one autogrow check of database name: when its data volume is at percent used or
// more (or its server stopped for want of space), it grows the volume claims to NextSize, at most
// max, and records the growth on the data claim. It changes neither the StatefulSet nor the pod
// (the autogrow job may not): a later `db resize` records the size in the StatefulSet.
func GrowIfUsed(ctx context.Context, c *kube.Client, name string, at int, max string, o ResizeOptions) (*Grown, error) {
	cs, ns := c.Clientset, c.Namespace
	limit, _, err := ParseStorage(max)
	if err != nil {
		return nil, err
	}
	_, cur, err := sizedDatabase(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	g := &Grown{Database: name, Size: cur.String(), Max: limit.String()}
	d, err := ReadDiskUsage(ctx, c, name)
	switch {
	case err == nil:
		for _, v := range d.Volumes {
			if v.Volume == "data" {
				g.UsedPercent = v.UsedPercent
			}
		}
		g.Full = d.Full
	case StoppedForSpace(ctx, cs, ns, name):
		g.Full, g.UsedPercent = true, 100
		o.noFilesystem = true
	default:
		return nil, fmt.Errorf("read the disk use of database %s: %w", name, err)
	}
	if g.UsedPercent < float64(at) && !g.Full {
		return g, nil
	}
	if g.Full {
		// A full server may be stopped or about to: the filesystem's size is not waited for in it.
		o.noFilesystem = true
	}
	next, ok := NextSize(cur, limit)
	if !ok {
		g.AtMax = true
		return g, nil
	}
	o.ClaimsOnly = true
	if _, err := ResizeStorage(ctx, c, name, next.String(), o); err != nil {
		return nil, err
	}
	g.Grew, g.To = true, next.String()
	rec, _ := json.Marshal(Growth{Time: time.Now().UTC().Truncate(time.Second), From: cur.String(), To: next.String(), UsedPercent: float64(int(g.UsedPercent*10)) / 10})
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationAutogrow: string(rec)}}})
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, PVCName(name), types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: kube.FieldManager}); err != nil {
		return g, fmt.Errorf("record the growth on volume claim %s: %w", PVCName(name), err)
	}
	return g, nil
}

// sizedDatabase reads database name's StatefulSet and its size (currentSize).
func sizedDatabase(ctx context.Context, cs kubernetes.Interface, ns, name string) (*appsv1.StatefulSet, resource.Quantity, error) {
	sts, err := GetDatabase(ctx, cs, ns, name)
	if err != nil {
		return nil, resource.Quantity{}, err
	}
	cur, err := currentSize(ctx, cs, ns, name, sts.Annotations[AnnotationStorage])
	return sts, cur, err
}

// currentSize is a database's size: its StatefulSet's record, or its data claim's request when
// autogrow has grown it past that.
func currentSize(ctx context.Context, cs kubernetes.Interface, ns, name, recorded string) (resource.Quantity, error) {
	cur, err := resource.ParseQuantity(recorded)
	if err != nil {
		return cur, fmt.Errorf("statefulset %s: annotation %s: %w", name, AnnotationStorage, err)
	}
	pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, PVCName(name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return cur, nil
	}
	if err != nil {
		return cur, fmt.Errorf("get persistentvolumeclaim %s: %w", PVCName(name), err)
	}
	if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok && q.Cmp(cur) > 0 {
		return q, nil
	}
	return cur, nil
}

// AutogrowOptions say what SetAutogrow sets.
type AutogrowOptions struct {
	Max   string
	At    int
	Every time.Duration
	Image string
}

// SetAutogrow turns database name's autogrow on (ValidateAutogrow against its size, and its data
// claim's StorageClass must allow expansion: an *InputError before any change) and returns it.
func SetAutogrow(ctx context.Context, c *kube.Client, name string, o AutogrowOptions) (*AutogrowStatus, error) {
	cs, ns := c.Clientset, c.Namespace
	found, err := Guard(ctx, cs, ns, name, AutogrowObjects(name))
	if err != nil {
		return nil, err
	}
	_, cur, err := sizedDatabase(ctx, cs, ns, name)
	if err != nil {
		return nil, err
	}
	a, err := ValidateAutogrow(cur, o.Max, o.At, o.Every)
	if err != nil {
		return nil, err
	}
	a.Image = o.Image
	if err := checkExpandable(ctx, cs, ns, PVCName(name)); err != nil {
		return nil, err
	}
	if _, err := ApplyAutogrow(ctx, cs, ns, name, a, found); err != nil {
		return nil, err
	}
	return &AutogrowStatus{At: a.At, Max: a.Max.String(), Every: cronEvery(everyCron(a.Every))}, nil
}

// UnsetAutogrow turns database name's autogrow off; off already is not an error. It returns the
// objects it deleted.
func UnsetAutogrow(ctx context.Context, c *kube.Client, name string) ([]ObjectRef, error) {
	cs, ns := c.Clientset, c.Namespace
	if err := Exists(ctx, cs, ns, name); err != nil {
		return nil, err
	}
	found, err := Guard(ctx, cs, ns, name, AutogrowObjects(name))
	if err != nil {
		return nil, err
	}
	return RemoveAutogrow(ctx, cs, ns, name, found)
}
