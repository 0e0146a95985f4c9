package database

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ObjectRef names one object a database has, or may have, in its namespace.
type ObjectRef struct {
	Kind string
	Name string
}

func (r ObjectRef) String() string { return r.Kind + "/" + r.Name }

// Owned is every object database name may have: what create writes, what the StatefulSet
// controller makes for it (the volume claims), and what its commands write later (the rotation
// record, the leases of its operations). Ownership is checked on all of them before any write.
func Owned(name string) []ObjectRef {
	return []ObjectRef{
		{"StatefulSet", name},
		{"Service", name},
		{"Service", HeadlessServiceName(name)},
		{"Secret", CredentialsSecretName(name)},
		{"Secret", SuperuserSecretName(name)},
		{"Secret", RotationSecretName(name)},
		{"ConfigMap", InitConfigMapName(name)},
		{"NetworkPolicy", name},
		{"ServiceAccount", BackupScheduleName(name)},
		{"Role", BackupScheduleName(name)},
		{"RoleBinding", BackupScheduleName(name)},
		{"CronJob", BackupScheduleName(name)},
		{"PersistentVolumeClaim", PVCName(name)},
		{"PersistentVolumeClaim", BackupPVCName(name)},
		{"Lease", LockName(name, "migrate")},
		{"Lease", LockName(name, "rotate")},
		{"Lease", LockName(name, "upgrade")},
		{"Pod", UpgradePodName(name)},
		{"Pod", UpgradeCheckPodName(name)},
		{"ConfigMap", ResizeConfigMapName(name)},
		{"ServiceAccount", AutogrowName(name)},
		{"Role", AutogrowName(name)},
		{"RoleBinding", AutogrowName(name)},
		{"CronJob", AutogrowName(name)},
	}
}

// RotationObjects are the Secrets rotate-credentials writes: the credentials, the superuser Secret
// (the password's verifier) and the rotation record. (Its lock is checked as it is taken.)
func RotationObjects(name string) []ObjectRef {
	return []ObjectRef{
		{"Secret", CredentialsSecretName(name)},
		{"Secret", SuperuserSecretName(name)},
		{"Secret", RotationSecretName(name)},
	}
}

// BackupScheduleObjects are what the daily backup is made of (ApplyBackupSchedule writes them).
func BackupScheduleObjects(name string) []ObjectRef {
	n := BackupScheduleName(name)
	return []ObjectRef{{"ServiceAccount", n}, {"Role", n}, {"RoleBinding", n}, {"CronJob", n}}
}

// IsOwnedBy tells whether labels mark an object as database name's: our managed-by label and the
// database's label.
func IsOwnedBy(labels map[string]string, name string) bool {
	return labels[LabelManagedBy] == "stackblaze" && labels[LabelDatabase] == name
}

// ForeignObjectError says that an object a command would write exists and is not the database's:
// nothing was written.
type ForeignObjectError struct {
	Database  string
	Namespace string
	Object    ObjectRef
}

func (e *ForeignObjectError) Error() string {
	return fmt.Sprintf("database %s: %s already exists in namespace %s and was not made by stackblaze for this database",
		e.Database, e.Object, e.Namespace)
}

// Found are the objects Guard read, by reference: what the cluster holds of a database's objects
// that are its own.
type Found map[ObjectRef]metav1.Object

// Guard checks, before any write, that each object in refs is absent or owned by database name;
// the first that is neither is a *ForeignObjectError. It returns the objects it read, so that the
// caller need not read them again.
func Guard(ctx context.Context, cs kubernetes.Interface, ns, name string, refs []ObjectRef) (Found, error) {
	found := Found{}
	for _, r := range refs {
		obj, err := getObject(ctx, cs, ns, r)
		if err != nil {
			return nil, err
		}
		if obj == nil {
			continue
		}
		if !IsOwnedBy(obj.GetLabels(), name) {
			return nil, &ForeignObjectError{Database: name, Namespace: ns, Object: r}
		}
		found[r] = obj
	}
	return found, nil
}

// Foreign lists the objects in refs that exist and are not owned by database name.
func Foreign(ctx context.Context, cs kubernetes.Interface, ns, name string, refs []ObjectRef) ([]ObjectRef, error) {
	var out []ObjectRef
	for _, r := range refs {
		obj, err := getObject(ctx, cs, ns, r)
		if err != nil {
			return out, err
		}
		if obj != nil && !IsOwnedBy(obj.GetLabels(), name) {
			out = append(out, r)
		}
	}
	return out, nil
}

// getObject reads one object; nil when it does not exist.
func getObject(ctx context.Context, cs kubernetes.Interface, ns string, r ObjectRef) (metav1.Object, error) {
	var (
		m   metav1.Object
		err error
	)
	get := metav1.GetOptions{}
	switch r.Kind {
	case "StatefulSet":
		m, err = cs.AppsV1().StatefulSets(ns).Get(ctx, r.Name, get)
	case "Service":
		m, err = cs.CoreV1().Services(ns).Get(ctx, r.Name, get)
	case "Secret":
		m, err = cs.CoreV1().Secrets(ns).Get(ctx, r.Name, get)
	case "ConfigMap":
		m, err = cs.CoreV1().ConfigMaps(ns).Get(ctx, r.Name, get)
	case "NetworkPolicy":
		m, err = cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, r.Name, get)
	case "ServiceAccount":
		m, err = cs.CoreV1().ServiceAccounts(ns).Get(ctx, r.Name, get)
	case "Role":
		m, err = cs.RbacV1().Roles(ns).Get(ctx, r.Name, get)
	case "RoleBinding":
		m, err = cs.RbacV1().RoleBindings(ns).Get(ctx, r.Name, get)
	case "CronJob":
		m, err = cs.BatchV1().CronJobs(ns).Get(ctx, r.Name, get)
	case "PersistentVolumeClaim":
		m, err = cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, r.Name, get)
	case "Lease":
		m, err = cs.CoordinationV1().Leases(ns).Get(ctx, r.Name, get)
	case "Pod":
		m, err = cs.CoreV1().Pods(ns).Get(ctx, r.Name, get)
	default:
		return nil, fmt.Errorf("no ownership check for kind %s", r.Kind)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", r, err)
	}
	return m, nil
}
