package database

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/pg"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// Phases of a rotation, in order; the record says how far a rotation got.
const (
	PhasePending       = "pending"
	PhaseSecretUpdated = "secret-updated"
	PhaseRolledOut     = "rolled-out"
)

// Rotation is a credentials rotation in progress. It is recorded in the Secret NAME-rotation
// before the database is touched, so that a run that dies at any step leaves enough in the
// cluster for the next run to finish the job with the same password. It is deleted at the end.
type Rotation struct {
	ID string
	// From is the login role the credentials Secret named when the rotation started; it keeps
	// its password until the attached workloads run with the new credentials (and the grace
	// period has passed).
	From string
	// To is the standby login role that gets Password.
	To       string
	Password string
	Phase    string
	Grace    time.Duration
	Started  time.Time
	// RolledOutAt is when every attached workload ran with the new credentials.
	RolledOutAt time.Time
	Holder      string

	resourceVersion string
}

// RotationSecretName is the Secret that records a rotation in progress.
func RotationSecretName(name string) string { return name + "-rotation" }

// AltRoleName is the second login role of a database: a member of the owner role that acts as
// it (see pg.EnsureLoginRoles). The owner is RoleName(name).
func AltRoleName(name string) string { return RoleName(name) + "_b" }

// StandbyRole is the login role a rotation gives the new password: the one the Secret does not
// name now.
func StandbyRole(name, current string) string {
	if current == RoleName(name) {
		return AltRoleName(name)
	}
	return RoleName(name)
}

// AnnotationRotated is the pod-template annotation that restarts an attached workload after a
// rotation (as `kubectl rollout restart` does with its own annotation); the value is the
// rotation's ID, so that a second run does not restart it again.
func AnnotationRotated(db string) string { return "stackblaze.io/rotated-" + db }

func (r *Rotation) data() map[string][]byte {
	d := map[string][]byte{
		"id":           []byte(r.ID),
		"from":         []byte(r.From),
		"to":           []byte(r.To),
		"password":     []byte(r.Password),
		"phase":        []byte(r.Phase),
		"graceSeconds": []byte(strconv.FormatInt(int64(r.Grace/time.Second), 10)),
		"started":      []byte(r.Started.UTC().Format(time.RFC3339Nano)),
		"holder":       []byte(r.Holder),
	}
	if !r.RolledOutAt.IsZero() {
		d["rolledOutAt"] = []byte(r.RolledOutAt.UTC().Format(time.RFC3339Nano))
	}
	return d
}

func rotationFrom(s *corev1.Secret) (*Rotation, error) {
	d := s.Data
	r := &Rotation{ID: string(d["id"]), From: string(d["from"]), To: string(d["to"]), Password: string(d["password"]),
		Phase: string(d["phase"]), Holder: string(d["holder"]), resourceVersion: s.ResourceVersion}
	if r.ID == "" || r.From == "" || r.To == "" || r.Password == "" {
		return nil, fmt.Errorf("secret %s does not hold a rotation (id, from, to, password)", s.Name)
	}
	if g, err := strconv.ParseInt(string(d["graceSeconds"]), 10, 64); err == nil {
		r.Grace = time.Duration(g) * time.Second
	}
	r.Started, _ = time.Parse(time.RFC3339Nano, string(d["started"]))
	if v := d["rolledOutAt"]; len(v) > 0 {
		r.RolledOutAt, _ = time.Parse(time.RFC3339Nano, string(v))
	}
	return r, nil
}

// GetRotation reads the rotation in progress, nil when there is none.
func GetRotation(ctx context.Context, cs kubernetes.Interface, ns, name string) (*Rotation, error) {
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, RotationSecretName(name), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", RotationSecretName(name), err)
	}
	return rotationFrom(s)
}

// CreateRotation records a new rotation. An existing record is an error: the caller holds the
// rotation lock and read none a moment ago.
func CreateRotation(ctx context.Context, cs kubernetes.Interface, ns, name string, r *Rotation) error {
	s := rotationSecret(name, r, "")
	got, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{FieldManager: kube.FieldManager})
	if err != nil {
		return fmt.Errorf("record the rotation in secret %s: %w", s.Name, err)
	}
	r.resourceVersion = got.ResourceVersion
	return nil
}

// UpdateRotation writes the record back, failing if it changed since it was read.
func UpdateRotation(ctx context.Context, cs kubernetes.Interface, ns, name string, r *Rotation) error {
	s := rotationSecret(name, r, r.resourceVersion)
	got, err := cs.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{FieldManager: kube.FieldManager})
	if err != nil {
		return fmt.Errorf("update the rotation record %s: %w", s.Name, err)
	}
	r.resourceVersion = got.ResourceVersion
	return nil
}

// rotationSecret is the record as a Secret; a resourceVersion makes an update conditional.
func rotationSecret(name string, r *Rotation, resourceVersion string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: RotationSecretName(name), Labels: Labels(name), ResourceVersion: resourceVersion},
		Type:       corev1.SecretTypeOpaque,
		Data:       r.data(),
	}
}

// DeleteRotation removes the record of a finished rotation.
func DeleteRotation(ctx context.Context, cs kubernetes.Interface, ns, name string, r *Rotation) error {
	err := cs.CoreV1().Secrets(ns).Delete(ctx, RotationSecretName(name), metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{ResourceVersion: &r.resourceVersion}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the rotation record %s: %w", RotationSecretName(name), err)
	}
	return nil
}

// ReadSuperuserPassword reads the postgres role's password from NAME-superuser.
func ReadSuperuserPassword(ctx context.Context, cs kubernetes.Interface, ns, name string) (string, error) {
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, SuperuserSecretName(name), metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read secret %s: %w", SuperuserSecretName(name), err)
	}
	p := string(s.Data["password"])
	if p == "" {
		return "", fmt.Errorf("secret %s has no password", SuperuserSecretName(name))
	}
	return p, nil
}

// WriteCredentials points the credentials Secret at username/password: username, password and a
// DATABASE_URL that agrees with them, in one update guarded by the resourceVersion it read
// (optimistic concurrency: a concurrent writer makes it fail rather than be overwritten). It
// reports false when the Secret already held exactly that.
func WriteCredentials(ctx context.Context, cs kubernetes.Interface, ns, name, username, password string) (bool, error) {
	secrets := cs.CoreV1().Secrets(ns)
	for attempt := 0; ; attempt++ {
		s, err := secrets.Get(ctx, CredentialsSecretName(name), metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("read secret %s: %w", CredentialsSecretName(name), err)
		}
		host := string(s.Data["host"])
		port, err := strconv.Atoi(string(s.Data["port"]))
		if host == "" || err != nil {
			return false, fmt.Errorf("secret %s lacks host or port", s.Name)
		}
		c := Credentials{Username: username, Password: password, Database: string(s.Data["database"])}
		url := DatabaseURL(c, host, port)
		if string(s.Data["username"]) == username && string(s.Data["password"]) == password && string(s.Data[URLKey]) == url {
			return false, nil
		}
		next := s.DeepCopy()
		next.Data["username"] = []byte(username)
		next.Data["password"] = []byte(password)
		next.Data[URLKey] = []byte(url)
		_, err = secrets.Update(ctx, next, metav1.UpdateOptions{FieldManager: kube.FieldManager})
		if apierrors.IsConflict(err) && attempt < 3 {
			continue // re-read: the next round compares against what is there now
		}
		if err != nil {
			return false, fmt.Errorf("update secret %s: %w", s.Name, err)
		}
		return true, refreshVerifier(ctx, cs, ns, name, password)
	}
}

// refreshVerifier keeps the superuser Secret's copy of the application password's verifier in
// step with the password (a data directory made again from scratch gets the password of the
// credentials Secret). A merge patch: the Secret's other keys stay as they are.
func refreshVerifier(ctx context.Context, cs kubernetes.Interface, ns, name, password string) error {
	v, err := pg.ScramVerifier(password)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"data": map[string][]byte{AppVerifierKey: []byte(v)}})
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Secrets(ns).Patch(ctx, SuperuserSecretName(name), types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: kube.FieldManager}); err != nil {
		return fmt.Errorf("update secret %s: %w", SuperuserSecretName(name), err)
	}
	return nil
}

// RestartWorkload sets the rotation's pod-template annotation on an attached workload, which
// rolls its pods so that they read the new credentials. False: it already had it.
func RestartWorkload(ctx context.Context, cs kubernetes.Interface, ns string, w WorkloadRef, db, id string) (bool, error) {
	wl, err := getWorkload(ctx, cs, ns, w)
	if err != nil {
		return false, err
	}
	key := AnnotationRotated(db)
	if wl.template.Annotations[key] == id {
		return false, nil
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{key: id}}}}})
	if err := patchWorkload(ctx, cs, ns, w, types.StrategicMergePatchType, patch); err != nil {
		return false, fmt.Errorf("restart %s: %w", w, err)
	}
	return true, nil
}

// deploymentDone tells whether a Deployment's rollout is done; one the Deployment controller gave
// up on (its progressDeadlineSeconds passed) is a *RolloutStalledError, as in kubectl rollout
// status (DeploymentStatusViewer): it will not finish by waiting. kubectl's helper package would
// bring cli-runtime and 87 more packages into the binary for this one condition.
func deploymentDone(w WorkloadRef, d *appsv1.Deployment) (bool, error) {
	if d.Generation <= d.Status.ObservedGeneration {
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentProgressing && c.Reason == progressDeadlineExceeded {
				return false, &RolloutStalledError{Workload: w, Message: c.Message}
			}
		}
	}
	return DeploymentRolledOut(d), nil
}

// progressDeadlineExceeded is the reason of a Deployment's Progressing condition once its rollout
// stopped making progress (the Deployment controller's TimedOutReason).
const progressDeadlineExceeded = "ProgressDeadlineExceeded"

// RolloutStalledError says that a workload's rollout stopped making progress: the Deployment
// controller marked it ProgressDeadlineExceeded.
type RolloutStalledError struct {
	Workload WorkloadRef
	Message  string
}

func (e *RolloutStalledError) Error() string {
	return fmt.Sprintf("the rollout of %s exceeded its progress deadline: %s", e.Workload, e.Message)
}

// DeploymentRolledOut is kubectl rollout status's test: the controller saw the latest spec, every
// replica runs it and is available, and no old pod is left.
func DeploymentRolledOut(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want &&
		st.Replicas == st.UpdatedReplicas && st.AvailableReplicas == st.UpdatedReplicas
}

// StatefulSetRolledOut is the same for a StatefulSet (RollingUpdate strategy; OnDelete never
// rolls on its own, so it counts as done once the controller saw the spec).
func StatefulSetRolledOut(s *appsv1.StatefulSet) bool {
	st := s.Status
	if st.ObservedGeneration < s.Generation {
		return false
	}
	if s.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return true
	}
	want := int32(1)
	if s.Spec.Replicas != nil {
		want = *s.Spec.Replicas
	}
	return st.UpdatedReplicas == want && st.ReadyReplicas == want && st.CurrentRevision == st.UpdateRevision
}

// WaitRollout watches a workload until its rollout is complete. A workload that no longer
// exists holds no credentials: that counts as done.
func WaitRollout(ctx context.Context, cs kubernetes.Interface, ns string, w WorkloadRef) error {
	if _, err := getWorkload(ctx, cs, ns, w); err != nil {
		var nf *WorkloadNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	var (
		lw   *cache.ListWatch
		obj  runtime.Object
		done func(runtime.Object) (bool, error)
	)
	switch w.Kind {
	case KindDeployment:
		lw = kube.ListWatchByName(w.Name, cs.AppsV1().Deployments(ns).List, cs.AppsV1().Deployments(ns).Watch)
		obj = &appsv1.Deployment{}
		done = func(o runtime.Object) (bool, error) {
			d, ok := o.(*appsv1.Deployment)
			if !ok {
				return false, nil
			}
			return deploymentDone(w, d)
		}
	case KindStatefulSet:
		lw = kube.ListWatchByName(w.Name, cs.AppsV1().StatefulSets(ns).List, cs.AppsV1().StatefulSets(ns).Watch)
		obj = &appsv1.StatefulSet{}
		done = func(o runtime.Object) (bool, error) {
			s, ok := o.(*appsv1.StatefulSet)
			return ok && StatefulSetRolledOut(s), nil
		}
	default:
		return fmt.Errorf("unsupported workload kind %q", w.Kind)
	}
	_, err := watchtools.UntilWithSync(ctx, lw, obj, nil, func(ev watch.Event) (bool, error) {
		if ev.Type == watch.Deleted {
			return true, nil // gone: nothing left that holds the old credentials
		}
		return done(ev.Object)
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("watch the rollout of %s: %w", w, err)
	}
	return nil
}
