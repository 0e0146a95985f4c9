package database

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/stackblaze/stackblaze/internal/kube"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	typedclientcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// Deleted says what Delete removed and what it kept.
type Deleted struct {
	Deleted []string `json:"deleted"`
	Kept    []string `json:"kept"`
	// Foreign are objects with one of the database's names that stackblaze did not make for it:
	// never deleted.
	Foreign []string `json:"foreign,omitempty"`
}

// Exists tells whether a database (its StatefulSet, managed by stackblaze) exists.
func Exists(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	_, err := GetDatabase(ctx, cs, ns, name)
	return err
}

// GetDatabase reads a database's StatefulSet; one that is missing or not owned by the database
// (IsOwnedBy) is a *NotFoundError.
func GetDatabase(ctx context.Context, cs kubernetes.Interface, ns, name string) (*appsv1.StatefulSet, error) {
	sts, err := cs.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && !IsOwnedBy(sts.Labels, name)) {
		return nil, &NotFoundError{Name: name, Namespace: ns}
	}
	if err != nil {
		return nil, fmt.Errorf("get statefulset %s: %w", name, err)
	}
	return sts, nil
}

// Delete removes a database's objects, found by label (its Secrets by name): only what carries our
// managed-by label and the database's label is deleted. Without deleteData it keeps the volume
// claims and the two Secrets: the data directory only accepts the passwords they hold, so a later
// create of the same name uses them and finds the data.
func Delete(ctx context.Context, cs kubernetes.Interface, ns, name string, deleteData bool) (*Deleted, error) {
	d := &Deleted{}
	r := remover{ctx: ctx, sel: metav1.ListOptions{LabelSelector: ManagedSelector(name)}, d: d}
	bg := metav1.DeletePropagationBackground
	r.opts = metav1.DeleteOptions{PropagationPolicy: &bg}

	if err := removeAll[*appsv1.StatefulSetList](r, "statefulset", cs.AppsV1().StatefulSets(ns), true); err != nil {
		return d, err
	}
	for _, step := range []func() error{
		func() error { return removeAll[*corev1.ServiceList](r, "service", cs.CoreV1().Services(ns), true) },
		func() error {
			return removeAll[*networkingv1.NetworkPolicyList](r, "networkpolicy", cs.NetworkingV1().NetworkPolicies(ns), true)
		},
		// The daily backup: the CronJob (its Jobs and their pods go with it) and what it runs as.
		func() error { return removeAll[*batchv1.CronJobList](r, "cronjob", cs.BatchV1().CronJobs(ns), true) },
		func() error {
			return removeAll[*rbacv1.RoleBindingList](r, "rolebinding", cs.RbacV1().RoleBindings(ns), true)
		},
		func() error { return removeAll[*rbacv1.RoleList](r, "role", cs.RbacV1().Roles(ns), true) },
		func() error {
			return removeAll[*corev1.ServiceAccountList](r, "serviceaccount", cs.CoreV1().ServiceAccounts(ns), true)
		},
		func() error {
			return removeAll[*corev1.ConfigMapList](r, "configmap", cs.CoreV1().ConfigMaps(ns), true)
		},
		// Secrets by name, never listed: a list of Secrets returns their contents, and its
		// Secrets are the ones it names (the credentials, the superuser, a rotation's record).
		func() error { return r.removeSecrets(cs.CoreV1().Secrets(ns), name, deleteData) },
	} {
		if err := step(); err != nil {
			return d, err
		}
	}

	pvcs, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, r.sel)
	if err != nil {
		return d, fmt.Errorf("list persistentvolumeclaims: %w", err)
	}
	names := map[string]bool{}
	for _, o := range pvcs.Items {
		names[o.Name] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	for _, n := range sorted {
		if err := r.remove("persistentvolumeclaim", n, cs.CoreV1().PersistentVolumeClaims(ns), deleteData); err != nil {
			return d, err
		}
	}
	// Objects of the database's names that are not its own were left alone: say so.
	foreign, err := Foreign(ctx, cs, ns, name, Owned(name))
	if err != nil {
		return d, err
	}
	for _, f := range foreign {
		d.Foreign = append(d.Foreign, f.String())
	}
	return d, nil
}

// remover deletes objects and records what it deleted and what it kept.
type remover struct {
	ctx  context.Context
	sel  metav1.ListOptions
	opts metav1.DeleteOptions
	d    *Deleted
}

type deleter interface {
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// typedClient is the part of a client-go typed client (StatefulSets(ns), Secrets(ns), ...) that
// deleting by label needs.
type typedClient[L runtime.Object] interface {
	deleter
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
}

func (r remover) remove(kind, name string, c deleter, really bool) error {
	if !really {
		r.d.Kept = append(r.d.Kept, kind+"/"+name)
		return nil
	}
	err := c.Delete(r.ctx, name, r.opts)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", kind, name, err)
	}
	r.d.Deleted = append(r.d.Deleted, kind+"/"+name)
	return nil
}

// removeSecrets deletes (or, when !really, keeps and records) the database's Secrets that exist
// and carry its labels, each read by name.
func (r remover) removeSecrets(secrets typedclientcorev1.SecretInterface, name string, really bool) error {
	for _, n := range []string{CredentialsSecretName(name), SuperuserSecretName(name), RotationSecretName(name)} {
		s, err := secrets.Get(r.ctx, n, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("get secret %s: %w", n, err)
		}
		if !IsOwnedBy(s.Labels, name) {
			continue
		}
		if err := r.remove("secret", n, secrets, really); err != nil {
			return err
		}
	}
	return nil
}

// removeAll deletes (or, when !really, keeps and records) every object of a kind that carries
// the database's labels.
func removeAll[L runtime.Object](r remover, kind string, c typedClient[L], really bool) error {
	list, err := c.List(r.ctx, r.sel)
	if err != nil {
		return fmt.Errorf("list %s: %w", plural(kind), err)
	}
	return meta.EachListItem(list, func(o runtime.Object) error {
		m, err := meta.Accessor(o)
		if err != nil {
			return err
		}
		return r.remove(kind, m.GetName(), c, really)
	})
}

// Scale sets a database's replica count through the scale subresource, so that the fields create
// applies stay as they are.
func Scale(ctx context.Context, cs kubernetes.Interface, ns, name string, replicas int32) (previous int32, err error) {
	sc, err := cs.AppsV1().StatefulSets(ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("get scale of statefulset %s: %w", name, err)
	}
	previous = sc.Spec.Replicas
	if previous == replicas {
		return previous, nil
	}
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, name, types.MergePatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: kube.FieldManager}, "scale"); err != nil {
		return previous, fmt.Errorf("scale statefulset %s: %w", name, err)
	}
	return previous, nil
}

func plural(kind string) string {
	if strings.HasSuffix(kind, "y") {
		return strings.TrimSuffix(kind, "y") + "ies"
	}
	return kind + "s"
}
