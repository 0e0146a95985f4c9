package database

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/stackblaze/stackblaze/internal/kube"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Attachments are recorded on the workload itself: an annotation lists them (database=ENV
// entries), and one label per database lets rotation find every attached workload with one list
// call per kind.
const (
	AnnotationAttached = "stackblaze.io/attached-databases"
	// URLKey is the credentials Secret's key that attach injects.
	URLKey = "DATABASE_URL"
	// DefaultEnv is the variable attach sets unless told otherwise.
	DefaultEnv = "DATABASE_URL"
)

var (
	dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	envRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// AttachedLabel is the label on a workload attached to database db.
func AttachedLabel(db string) string { return "stackblaze.io/attached-" + db }

// Workload kinds attach supports.
const (
	KindDeployment  = "Deployment"
	KindStatefulSet = "StatefulSet"
)

// WorkloadRef names a Deployment or a StatefulSet of the namespace.
type WorkloadRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

func (w WorkloadRef) String() string { return strings.ToLower(w.Kind) + "/" + w.Name }

// ParseWorkload reads deployment/NAME, statefulset/NAME (also deploy/, sts/ and the plural
// forms) or a bare NAME, which means a Deployment.
func ParseWorkload(s string) (WorkloadRef, error) {
	kind, name, found := strings.Cut(strings.TrimSpace(s), "/")
	if !found {
		kind, name = "deployment", kind
	}
	var w WorkloadRef
	switch strings.ToLower(kind) {
	case "deployment", "deployments", "deploy":
		w.Kind = KindDeployment
	case "statefulset", "statefulsets", "sts":
		w.Kind = KindStatefulSet
	default:
		return w, inputErrorf("workload %q: kind %q is not supported: use deployment/NAME or statefulset/NAME", s, kind)
	}
	if !dns1123.MatchString(name) || len(name) > 253 {
		return w, inputErrorf("workload %q: %q is not a valid object name", s, name)
	}
	w.Name = name
	return w, nil
}

// ValidateEnvName checks an environment variable name for --env.
func ValidateEnvName(s string) error {
	if !envRE.MatchString(s) {
		return inputErrorf("environment variable name %q is not valid: use letters, digits and '_', not starting with a digit (like DATABASE_URL)", s)
	}
	return nil
}

// WorkloadNotFoundError says that the workload to attach to does not exist.
type WorkloadNotFoundError struct {
	Workload  WorkloadRef
	Namespace string
}

func (e *WorkloadNotFoundError) Error() string {
	return fmt.Sprintf("%s not found in namespace %s", e.Workload, e.Namespace)
}

// EnvConflictError says that a container already sets the variable from something else.
type EnvConflictError struct {
	Workload  WorkloadRef
	Container string
	Env       string
	// Source describes what sets it now ("a literal value", "secret other/KEY").
	Source string
}

func (e *EnvConflictError) Error() string {
	return fmt.Sprintf("container %s of %s already sets %s from %s", e.Container, e.Workload, e.Env, e.Source)
}

// Attachment is one database variable on one workload.
type Attachment struct {
	Database string      `json:"database"`
	Workload WorkloadRef `json:"workload"`
	Env      string      `json:"env"`
}

// AttachResult says what attach or detach did.
type AttachResult struct {
	Database   string      `json:"database"`
	Workload   WorkloadRef `json:"workload"`
	Env        []string    `json:"env"`
	Secret     string      `json:"secret"`
	Changed    bool        `json:"changed"`
	Containers []string    `json:"containers"`
	// Replaced lists containers whose variable came from elsewhere (--overwrite).
	Replaced []string `json:"replaced,omitempty"`
}

// workload is the part of a Deployment or StatefulSet that attach reads.
type workload struct {
	meta     *metav1.ObjectMeta
	template *corev1.PodTemplateSpec
}

func getWorkload(ctx context.Context, cs kubernetes.Interface, ns string, w WorkloadRef) (*workload, error) {
	var (
		meta *metav1.ObjectMeta
		tmpl *corev1.PodTemplateSpec
		err  error
	)
	switch w.Kind {
	case KindDeployment:
		d, e := cs.AppsV1().Deployments(ns).Get(ctx, w.Name, metav1.GetOptions{})
		if e == nil {
			meta, tmpl = &d.ObjectMeta, &d.Spec.Template
		}
		err = e
	case KindStatefulSet:
		s, e := cs.AppsV1().StatefulSets(ns).Get(ctx, w.Name, metav1.GetOptions{})
		if e == nil {
			meta, tmpl = &s.ObjectMeta, &s.Spec.Template
		}
		err = e
	default:
		return nil, fmt.Errorf("unsupported workload kind %q", w.Kind)
	}
	if apierrors.IsNotFound(err) {
		return nil, &WorkloadNotFoundError{Workload: w, Namespace: ns}
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", w, err)
	}
	return &workload{meta: meta, template: tmpl}, nil
}

func patchWorkload(ctx context.Context, cs kubernetes.Interface, ns string, w WorkloadRef, pt types.PatchType, patch []byte) error {
	opts := metav1.PatchOptions{FieldManager: kube.FieldManager}
	var err error
	switch w.Kind {
	case KindDeployment:
		_, err = cs.AppsV1().Deployments(ns).Patch(ctx, w.Name, pt, patch, opts)
	case KindStatefulSet:
		_, err = cs.AppsV1().StatefulSets(ns).Patch(ctx, w.Name, pt, patch, opts)
	}
	if apierrors.IsNotFound(err) {
		return &WorkloadNotFoundError{Workload: w, Namespace: ns}
	}
	return err
}

// ParseAttachments reads the annotation: "db=ENV,db2=ENV2" entries.
func ParseAttachments(v string) [][2]string {
	var out [][2]string
	for _, e := range strings.Split(v, ",") {
		db, env, ok := strings.Cut(strings.TrimSpace(e), "=")
		if ok && db != "" && env != "" {
			out = append(out, [2]string{db, env})
		}
	}
	return out
}

func formatAttachments(entries [][2]string) string {
	sort.Slice(entries, func(i, j int) bool {
		if entries[i][0] != entries[j][0] {
			return entries[i][0] < entries[j][0]
		}
		return entries[i][1] < entries[j][1]
	})
	parts := make([]string, 0, len(entries))
	for i, e := range entries {
		if i > 0 && e == entries[i-1] {
			continue
		}
		parts = append(parts, e[0]+"="+e[1])
	}
	return strings.Join(parts, ",")
}

// isOurs tells whether an env entry is exactly what attach adds for database db.
func isOurs(e corev1.EnvVar, db string) bool {
	if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		return false
	}
	r := e.ValueFrom.SecretKeyRef
	return r.Name == CredentialsSecretName(db) && r.Key == URLKey
}

func describeSource(e corev1.EnvVar) string {
	switch {
	case e.ValueFrom == nil:
		return "a literal value"
	case e.ValueFrom.SecretKeyRef != nil:
		return fmt.Sprintf("secret %s key %s", e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
	case e.ValueFrom.ConfigMapKeyRef != nil:
		return fmt.Sprintf("configmap %s key %s", e.ValueFrom.ConfigMapKeyRef.Name, e.ValueFrom.ConfigMapKeyRef.Key)
	default:
		return "another source (valueFrom)"
	}
}

// jsonPointer escapes a key for a JSON patch path (RFC 6901).
func jsonPointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// metadataOps sets (or removes, when value is "") an annotation and a label.
func metadataOps(meta *metav1.ObjectMeta, annotation, annotationValue, label string, keepLabel bool) []patchOp {
	var ops []patchOp
	_, hadA := meta.Annotations[annotation]
	switch {
	case annotationValue != "" && meta.Annotations == nil:
		ops = append(ops, patchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{annotation: annotationValue}})
	case annotationValue != "" && meta.Annotations[annotation] != annotationValue:
		ops = append(ops, patchOp{Op: "add", Path: "/metadata/annotations/" + jsonPointer(annotation), Value: annotationValue})
	case annotationValue == "" && hadA:
		ops = append(ops, patchOp{Op: "remove", Path: "/metadata/annotations/" + jsonPointer(annotation)})
	}
	_, hadL := meta.Labels[label]
	switch {
	case keepLabel && meta.Labels == nil:
		ops = append(ops, patchOp{Op: "add", Path: "/metadata/labels", Value: map[string]string{label: "true"}})
	case keepLabel && meta.Labels[label] != "true":
		ops = append(ops, patchOp{Op: "add", Path: "/metadata/labels/" + jsonPointer(label), Value: "true"})
	case !keepLabel && hadL:
		ops = append(ops, patchOp{Op: "remove", Path: "/metadata/labels/" + jsonPointer(label)})
	}
	return ops
}

// Attach sets env on every container of the workload's pod template from the database's
// credentials Secret (secretKeyRef, never a literal), and records the attachment. Nothing changes
// when it is already there. A variable that something else sets is an *EnvConflictError unless
// overwrite. The patch is a JSON patch guarded by the resourceVersion it was computed from, so it
// touches only our entries and never races another writer.
func Attach(ctx context.Context, cs kubernetes.Interface, ns, db string, w WorkloadRef, env string, overwrite bool) (*AttachResult, error) {
	res := &AttachResult{Database: db, Workload: w, Env: []string{env}, Secret: CredentialsSecretName(db)}
	entry := corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: CredentialsSecretName(db)}, Key: URLKey}}}
	changed, err := patchGuarded(ctx, cs, ns, w, func(wl *workload) ([]patchOp, error) {
		res.Containers, res.Replaced = nil, nil
		var ops []patchOp
		for i, c := range wl.template.Spec.Containers {
			res.Containers = append(res.Containers, c.Name)
			base := fmt.Sprintf("/spec/template/spec/containers/%d/env", i)
			idx := -1
			for j, e := range c.Env {
				if e.Name == env {
					idx = j
				}
			}
			switch {
			case idx < 0 && c.Env == nil:
				ops = append(ops, patchOp{Op: "add", Path: base, Value: []corev1.EnvVar{entry}})
			case idx < 0:
				ops = append(ops, patchOp{Op: "add", Path: base + "/-", Value: entry})
			case isOurs(c.Env[idx], db):
			case !overwrite:
				return nil, &EnvConflictError{Workload: w, Container: c.Name, Env: env, Source: describeSource(c.Env[idx])}
			default:
				res.Replaced = append(res.Replaced, c.Name)
				ops = append(ops, patchOp{Op: "replace", Path: fmt.Sprintf("%s/%d", base, idx), Value: entry})
			}
		}
		entries := append(ParseAttachments(wl.meta.Annotations[AnnotationAttached]), [2]string{db, env})
		return append(ops, metadataOps(wl.meta, AnnotationAttached, formatAttachments(entries), AttachedLabel(db), true)...), nil
	})
	if err != nil {
		return nil, err
	}
	res.Changed = changed
	return res, nil
}

// patchGuarded reads the workload, lets build describe the change as JSON-patch operations, and
// applies them guarded by the resourceVersion it read (a "test" operation), reading again when
// another writer got there first. It reports whether anything changed; no operations means
// there was nothing to do.
func patchGuarded(ctx context.Context, cs kubernetes.Interface, ns string, w WorkloadRef, build func(*workload) ([]patchOp, error)) (bool, error) {
	for attempt := 0; ; attempt++ {
		wl, err := getWorkload(ctx, cs, ns, w)
		if err != nil {
			return false, err
		}
		ops, err := build(wl)
		if err != nil || len(ops) == 0 {
			return false, err
		}
		ops = append([]patchOp{{Op: "test", Path: "/metadata/resourceVersion", Value: wl.meta.ResourceVersion}}, ops...)
		done, err := applyJSONPatch(ctx, cs, ns, w, ops, attempt)
		if err != nil || done {
			return done, err
		}
	}
}

// applyJSONPatch sends ops; false means the object changed since it was read (try again).
func applyJSONPatch(ctx context.Context, cs kubernetes.Interface, ns string, w WorkloadRef, ops []patchOp, attempt int) (bool, error) {
	patch, err := json.Marshal(ops)
	if err != nil {
		return false, err
	}
	err = patchWorkload(ctx, cs, ns, w, types.JSONPatchType, patch)
	// A failed "test" op (the resourceVersion moved under us, as the Deployment controller does
	// right after a workload is created) comes back as 422 Invalid, whose message does not always
	// say so, or 409 Conflict: read again and recompute. Our own ops are well formed, so an
	// Invalid that persists after the retries is reported.
	if attempt < 5 && (apierrors.IsConflict(err) || apierrors.IsInvalid(err)) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("patch %s: %w", w, err)
	}
	return true, nil
}

// Detach removes what Attach added for database db: the variable env (or, when env is "", every
// variable recorded for db) where it comes from db's Secret, and the record. A variable with the
// same name from another source is left alone.
func Detach(ctx context.Context, cs kubernetes.Interface, ns, db string, w WorkloadRef, env string) (*AttachResult, error) {
	res := &AttachResult{Database: db, Workload: w, Secret: CredentialsSecretName(db)}
	changed, err := patchGuarded(ctx, cs, ns, w, func(wl *workload) ([]patchOp, error) {
		res.Containers = nil
		all := ParseAttachments(wl.meta.Annotations[AnnotationAttached])
		names := map[string]bool{}
		var keep [][2]string
		for _, e := range all {
			if e[0] == db && (env == "" || e[1] == env) {
				names[e[1]] = true
			} else {
				keep = append(keep, e)
			}
		}
		if env != "" {
			names[env] = true
		} else if len(names) == 0 {
			names[DefaultEnv] = true
		}
		res.Env = sortedKeys(names)
		var ops []patchOp
		for i, c := range wl.template.Spec.Containers {
			removed := false
			// Highest index first, so that earlier indexes stay valid.
			for j := len(c.Env) - 1; j >= 0; j-- {
				if names[c.Env[j].Name] && isOurs(c.Env[j], db) {
					ops = append(ops, patchOp{Op: "remove", Path: fmt.Sprintf("/spec/template/spec/containers/%d/env/%d", i, j)})
					removed = true
				}
			}
			if removed {
				res.Containers = append(res.Containers, c.Name)
			}
		}
		stillAttached := false
		for _, e := range keep {
			if e[0] == db {
				stillAttached = true
			}
		}
		return append(ops, metadataOps(wl.meta, AnnotationAttached, formatAttachments(keep), AttachedLabel(db), stillAttached)...), nil
	})
	if err != nil {
		return nil, err
	}
	res.Changed = changed
	return res, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ListAttachments returns every workload attached to db, with one list call per kind.
func ListAttachments(ctx context.Context, cs kubernetes.Interface, ns, db string) ([]Attachment, error) {
	sel := metav1.ListOptions{LabelSelector: AttachedLabel(db)}
	var metas []struct {
		kind string
		meta metav1.ObjectMeta
	}
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	for _, d := range deps.Items {
		metas = append(metas, struct {
			kind string
			meta metav1.ObjectMeta
		}{KindDeployment, d.ObjectMeta})
	}
	stss, err := cs.AppsV1().StatefulSets(ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("list statefulsets: %w", err)
	}
	for _, s := range stss.Items {
		metas = append(metas, struct {
			kind string
			meta metav1.ObjectMeta
		}{KindStatefulSet, s.ObjectMeta})
	}
	out := []Attachment{}
	for _, m := range metas {
		for _, e := range ParseAttachments(m.meta.Annotations[AnnotationAttached]) {
			if e[0] == db {
				out = append(out, Attachment{Database: db, Workload: WorkloadRef{Kind: m.kind, Name: m.meta.Name}, Env: e[1]})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Workload.String() != out[j].Workload.String() {
			return out[i].Workload.String() < out[j].Workload.String()
		}
		return out[i].Env < out[j].Env
	})
	return out, nil
}

// AttachedWorkloads is the distinct workloads of ListAttachments.
func AttachedWorkloads(as []Attachment) []WorkloadRef {
	var out []WorkloadRef
	seen := map[WorkloadRef]bool{}
	for _, a := range as {
		if !seen[a.Workload] {
			seen[a.Workload] = true
			out = append(out, a.Workload)
		}
	}
	return out
}
