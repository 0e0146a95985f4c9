package commands_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	watchtools "k8s.io/client-go/tools/watch"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// usersLabels mark an object as the user's own (another tool's), not stackblaze's.
var usersLabels = map[string]string{"app.kubernetes.io/managed-by": "helm", "app": "users-own"}

// createForeign makes, as the user would, an object of kind with name that stackblaze did not
// make: each the smallest valid one of its kind.
func createForeign(t *testing.T, cs kubernetes.Interface, ns string, ref database.ObjectRef, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	om := metav1.ObjectMeta{Name: ref.Name, Namespace: ns, Labels: labels}
	pod := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "users-own"}},
		Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyOnFailure, Containers: []corev1.Container{{Name: "app", Image: "users/app:1"}}},
	}
	zero := int32(0)
	suspend := true
	var err error
	switch ref.Kind {
	case "StatefulSet":
		pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
		_, err = cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: om, Spec: appsv1.StatefulSetSpec{
			Replicas: &zero, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "users-own"}}, Template: pod}}, metav1.CreateOptions{})
	case "Service":
		_, err = cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: om, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "users-own"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{})
	case "Secret":
		_, err = cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: om, StringData: map[string]string{"token": "users-own"}}, metav1.CreateOptions{})
	case "ConfigMap":
		_, err = cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: om, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	case "NetworkPolicy":
		_, err = cs.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: om}, metav1.CreateOptions{})
	case "ServiceAccount":
		_, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: om}, metav1.CreateOptions{})
	case "Role":
		_, err = cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: om}, metav1.CreateOptions{})
	case "RoleBinding":
		_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: om,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "users-own"}}, metav1.CreateOptions{})
	case "CronJob":
		_, err = cs.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{ObjectMeta: om, Spec: batchv1.CronJobSpec{
			Schedule: "0 0 1 1 *", Suspend: &suspend, JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: pod}}}}, metav1.CreateOptions{})
	case "PersistentVolumeClaim":
		_, err = cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: om, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}, metav1.CreateOptions{})
	case "Lease":
		holder := "users-own"
		_, err = cs.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: om, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}, metav1.CreateOptions{})
	case "Pod":
		// Held back by a scheduling gate: it never runs, and its status is written once.
		_, err = cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: om, Spec: corev1.PodSpec{
			SchedulingGates: []corev1.PodSchedulingGate{{Name: "users-own/hold"}},
			Containers:      []corev1.Container{{Name: "app", Image: "users/app:1"}}}}, metav1.CreateOptions{})
	default:
		t.Fatalf("no foreign object of kind %s", ref.Kind)
	}
	if err != nil {
		t.Fatalf("create the user's %s: %v", ref, err)
	}
	if ref.Kind == "Pod" {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, err := watchtools.UntilWithSync(wctx, cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "pods", ns,
			fields.OneTermEqualSelector("metadata.name", ref.Name)), &corev1.Pod{}, nil,
			func(ev watch.Event) (bool, error) {
				p, ok := ev.Object.(*corev1.Pod)
				return ok && len(p.Status.Conditions) > 0, nil
			})
		if err != nil {
			t.Fatalf("the user's %s: its status is never written: %v", ref, err)
		}
	}
	if ref.Kind == "StatefulSet" {
		// The StatefulSet controller writes its status once: wait for that, so that the
		// namespace holds still before it is compared.
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		_, err := watchtools.UntilWithSync(wctx, cache.NewListWatchFromClient(cs.AppsV1().RESTClient(), "statefulsets", ns,
			fields.OneTermEqualSelector("metadata.name", ref.Name)), &appsv1.StatefulSet{}, nil,
			func(ev watch.Event) (bool, error) {
				s, ok := ev.Object.(*appsv1.StatefulSet)
				return ok && s.Status.ObservedGeneration >= s.Generation, nil
			})
		if err != nil {
			t.Fatalf("the user's %s: its status is never written: %v", ref, err)
		}
	}
}

// namespaceState is every object of the kinds a database has (and pods, and the workloads a
// user runs), with its resourceVersion: two equal states mean nothing was written.
func namespaceState(t *testing.T, cs kubernetes.Interface, ns string) []string {
	t.Helper()
	ctx := context.Background()
	lo := metav1.ListOptions{}
	var out []string
	add := func(kind string, list runtime.Object, err error) {
		if err != nil {
			t.Fatalf("list %s: %v", kind, err)
		}
		_ = meta.EachListItem(list, func(o runtime.Object) error {
			m, _ := meta.Accessor(o)
			if (kind == "ServiceAccount" && m.GetName() == "default") || (kind == "ConfigMap" && m.GetName() == "kube-root-ca.crt") {
				return nil // Kubernetes makes these in every new namespace, in its own time
			}
			out = append(out, fmt.Sprintf("%s/%s@%s", kind, m.GetName(), m.GetResourceVersion()))
			return nil
		})
	}
	l1, e1 := cs.AppsV1().StatefulSets(ns).List(ctx, lo)
	add("StatefulSet", l1, e1)
	l2, e2 := cs.CoreV1().Services(ns).List(ctx, lo)
	add("Service", l2, e2)
	l3, e3 := cs.CoreV1().Secrets(ns).List(ctx, lo)
	add("Secret", l3, e3)
	l4, e4 := cs.CoreV1().ConfigMaps(ns).List(ctx, lo)
	add("ConfigMap", l4, e4)
	l5, e5 := cs.NetworkingV1().NetworkPolicies(ns).List(ctx, lo)
	add("NetworkPolicy", l5, e5)
	l6, e6 := cs.CoreV1().ServiceAccounts(ns).List(ctx, lo)
	add("ServiceAccount", l6, e6)
	l7, e7 := cs.RbacV1().Roles(ns).List(ctx, lo)
	add("Role", l7, e7)
	l8, e8 := cs.RbacV1().RoleBindings(ns).List(ctx, lo)
	add("RoleBinding", l8, e8)
	l9, e9 := cs.BatchV1().CronJobs(ns).List(ctx, lo)
	add("CronJob", l9, e9)
	l10, e10 := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, lo)
	add("PersistentVolumeClaim", l10, e10)
	l11, e11 := cs.CoordinationV1().Leases(ns).List(ctx, lo)
	add("Lease", l11, e11)
	l12, e12 := cs.CoreV1().Pods(ns).List(ctx, lo)
	add("Pod", l12, e12)
	l13, e13 := cs.AppsV1().Deployments(ns).List(ctx, lo)
	add("Deployment", l13, e13)
	sort.Strings(out)
	return out
}

// For each kind of object a database has: when one of its names is taken by an object that is
// not the database's (the user's own, or another database's), create exits 6 naming it and
// writes nothing in the namespace.
func TestE2ECreateNeverTakesOverAnObject(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	refs := database.Owned("web")
	kinds := map[string]bool{}
	for _, r := range refs {
		kinds[r.Kind] = true
	}
	for _, want := range []string{"Service", "Secret", "ConfigMap", "NetworkPolicy", "ServiceAccount", "Role", "RoleBinding", "CronJob", "PersistentVolumeClaim", "StatefulSet"} {
		if !kinds[want] {
			t.Errorf("database.Owned has no %s: its ownership is not checked", want)
		}
	}
	// The user's own objects, and one of another database's (its labels name that database).
	type foreign struct {
		ref    database.ObjectRef
		labels map[string]string
	}
	var cases []foreign
	for _, r := range refs {
		cases = append(cases, foreign{r, usersLabels})
	}
	cases = append(cases, foreign{database.ObjectRef{Kind: "Secret", Name: database.CredentialsSecretName("web")}, database.Labels("other")})
	for _, tc := range cases {
		t.Run(tc.ref.Kind+"-"+tc.ref.Name+"-"+tc.labels["app.kubernetes.io/managed-by"], func(t *testing.T) {
			t.Parallel()
			ns := env.Namespace(t, nil)
			createForeign(t, env.Client, ns, tc.ref, tc.labels)
			before := namespaceState(t, env.Client, ns)
			r := cli(t, "", ns, "db", "create", "web", "--no-wait")
			if r.code != cmdutil.ExitConflict {
				t.Errorf("create beside the user's %s: exit %d, want %d", tc.ref, r.code, cmdutil.ExitConflict)
			}
			if !strings.Contains(r.stderr, tc.ref.String()) || !strings.Contains(r.stderr, "not made by stackblaze") {
				t.Errorf("the error does not name %s:\n%s", tc.ref, r.stderr)
			}
			if after := namespaceState(t, env.Client, ns); strings.Join(after, "\n") != strings.Join(before, "\n") {
				t.Errorf("the refused create changed the namespace:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// delete --delete-data removes only what is the database's: objects of its names that are not
// its own are left as they were, and named.
func TestE2EDeleteLeavesForeignObjects(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := context.Background()
	mustOK(t, cli(t, "", ns, "db", "create", "shop", "--no-wait"))
	// The init script's ConfigMap and the backup job's Role are replaced by the user's own; the
	// rotation record's and the migration lock's names, unused now, are taken by the user.
	replaced := []database.ObjectRef{{Kind: "ConfigMap", Name: database.InitConfigMapName("shop")}, {Kind: "Role", Name: database.BackupScheduleName("shop")}}
	if err := env.Client.CoreV1().ConfigMaps(ns).Delete(ctx, replaced[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.RbacV1().Roles(ns).Delete(ctx, replaced[1].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	taken := append(replaced, database.ObjectRef{Kind: "Secret", Name: database.RotationSecretName("shop")},
		database.ObjectRef{Kind: "Lease", Name: database.LockName("shop", "migrate")})
	for _, r := range taken {
		createForeign(t, env.Client, ns, r, usersLabels)
	}
	state := func() map[string]string {
		m := map[string]string{}
		for _, s := range namespaceState(t, env.Client, ns) {
			k, rv, _ := strings.Cut(s, "@")
			m[k] = rv
		}
		return m
	}
	before := state()

	r := cli(t, "", ns, "db", "delete", "shop", "--delete-data", "--yes")
	mustOK(t, r)
	after := state()
	for _, ref := range taken {
		if after[ref.String()] == "" || after[ref.String()] != before[ref.String()] {
			t.Errorf("delete touched the user's %s (resourceVersion %q, was %q)", ref, after[ref.String()], before[ref.String()])
		}
		if !strings.Contains(r.stderr, ref.String()) {
			t.Errorf("delete does not say it left %s alone:\n%s", ref, r.stderr)
		}
	}
	for _, gone := range []string{"StatefulSet/shop", "Service/shop", "Secret/shop-credentials", "CronJob/shop-backup"} {
		if after[gone] != "" {
			t.Errorf("delete --delete-data left the database's own %s", gone)
		}
	}
}
