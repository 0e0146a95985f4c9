package database

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/pg"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Existing is what the cluster already holds for a database name, read before create applies.
type Existing struct {
	StatefulSet *appsv1.StatefulSet
	Superuser   *corev1.Secret
	Credentials *corev1.Secret
}

// ExistingIn picks a database's StatefulSet and Secrets out of what Guard read; missing ones are
// nil.
func ExistingIn(found Found, name string) *Existing {
	var e Existing
	e.StatefulSet, _ = found[ObjectRef{"StatefulSet", name}].(*appsv1.StatefulSet)
	e.Superuser, _ = found[ObjectRef{"Secret", SuperuserSecretName(name)}].(*corev1.Secret)
	e.Credentials, _ = found[ObjectRef{"Secret", CredentialsSecretName(name)}].(*corev1.Secret)
	return &e
}

// Diff compares the spec recorded on an existing StatefulSet with a requested one and returns
// one line per difference, or nothing.
func Diff(sts *appsv1.StatefulSet, want Spec) []string {
	var d []string
	a := sts.Annotations
	if got := a[AnnotationVersion]; got != strconv.Itoa(want.Version) {
		d = append(d, fmt.Sprintf("version: %s in the cluster, %d requested", orUnknown(got), want.Version))
	}
	if got := a[AnnotationStorage]; !sameQuantity(got, want.Storage) {
		d = append(d, fmt.Sprintf("storage: %s in the cluster, %s requested", orUnknown(safeQuantity(got)), want.Storage.String()))
	}
	if got := a[AnnotationPlan]; got != want.Plan.Name {
		d = append(d, fmt.Sprintf("plan: %s in the cluster, %s requested", orUnknown(got), want.Plan.Name))
	}
	return d
}

func sameQuantity(s string, want resource.Quantity) bool {
	q, err := resource.ParseQuantity(s)
	return err == nil && q.Cmp(want) == 0
}

func safeQuantity(s string) string {
	if s == "" {
		return ""
	}
	if q, err := resource.ParseQuantity(s); err == nil {
		return q.String()
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// CredentialsFrom returns the passwords to use: those already in the Secrets when they exist (so
// that create never changes a password the data directory knows), new ones otherwise.
func CredentialsFrom(name string, e *Existing) (Credentials, error) {
	c := Credentials{Username: RoleName(name), Database: RoleName(name)}
	if e != nil && e.Credentials != nil {
		if p := string(e.Credentials.Data["password"]); p != "" {
			c.Password = p
		}
		if u := string(e.Credentials.Data["username"]); u != "" {
			c.Username = u
		}
		if d := string(e.Credentials.Data["database"]); d != "" {
			c.Database = d
		}
	}
	if e != nil && e.Superuser != nil {
		c.SuperuserPassword = string(e.Superuser.Data["password"])
	}
	var err error
	if c.Password == "" {
		if c.Password, err = NewPassword(); err != nil {
			return c, err
		}
	}
	if c.SuperuserPassword == "" {
		if c.SuperuserPassword, err = NewPassword(); err != nil {
			return c, err
		}
	}
	// Keep the verifier the Secret has while it matches the password (a new salt would change
	// the Secret on every run); make one when it is missing or stale.
	if e != nil && e.Superuser != nil {
		if v := string(e.Superuser.Data[AppVerifierKey]); pg.VerifierMatches(v, c.Password) {
			c.Verifier = v
		}
	}
	if c.Verifier == "" {
		if c.Verifier, err = pg.ScramVerifier(c.Password); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Change is one object that apply created or changed.
type Change struct {
	Kind    string
	Name    string
	Created bool
}

func (c Change) String() string {
	verb := "updated"
	if c.Created {
		verb = "created"
	}
	return fmt.Sprintf("%s %s %s", c.Kind, c.Name, verb)
}

// Apply writes every object of a database with server-side apply and returns those it created or
// changed (against before, the objects as Guard read them); none means the cluster already held
// exactly this.
func Apply(ctx context.Context, cs kubernetes.Interface, o Objects, before Found) ([]Change, error) {
	ns := *o.StatefulSet.Namespace
	var changes []Change
	secrets := cs.CoreV1().Secrets(ns)
	for _, sec := range []*secretAC{o.SuperuserSecret, o.CredentialsSecret} {
		if err := applyObject(ctx, &changes, before, "Secret", *sec.Name, secrets.Apply, sec); err != nil {
			return changes, err
		}
	}
	cms := cs.CoreV1().ConfigMaps(ns)
	if err := applyObject(ctx, &changes, before, "ConfigMap", *o.InitConfigMap.Name, cms.Apply, o.InitConfigMap); err != nil {
		return changes, err
	}
	services := cs.CoreV1().Services(ns)
	for _, svc := range []*serviceAC{o.HeadlessService, o.Service} {
		if err := applyObject(ctx, &changes, before, "Service", *svc.Name, services.Apply, svc); err != nil {
			return changes, err
		}
	}
	nps := cs.NetworkingV1().NetworkPolicies(ns)
	if err := applyObject(ctx, &changes, before, "NetworkPolicy", *o.NetworkPolicy.Name, nps.Apply, o.NetworkPolicy); err != nil {
		return changes, err
	}
	stss := cs.AppsV1().StatefulSets(ns)
	err := applyObject(ctx, &changes, before, "StatefulSet", *o.StatefulSet.Name, stss.Apply, o.StatefulSet)
	return changes, err
}

// applyObject writes one object with server-side apply (stackblaze's field manager, taking
// ownership of conflicting fields) and appends it to changes when it was created or its
// resourceVersion moved.
func applyObject[AC any, T metaObject](ctx context.Context, changes *[]Change, before Found, kind, name string,
	apply func(context.Context, AC, metav1.ApplyOptions) (T, error), ac AC) error {
	was, existed := before[ObjectRef{kind, name}]
	got, err := apply(ctx, ac, metav1.ApplyOptions{FieldManager: kube.FieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply %s %s: %w", strings.ToLower(kind), name, err)
	}
	if !existed || was.GetResourceVersion() != got.GetResourceVersion() {
		*changes = append(*changes, Change{Kind: kind, Name: name, Created: !existed})
	}
	return nil
}

type metaObject interface{ GetResourceVersion() string }
