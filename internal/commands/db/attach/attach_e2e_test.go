package attach_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

var appImage = database.DefaultImageRepository + ":17"

// deployment is an app (testbed.AppDeployment) with a variable of its own and a second container,
// so that attach's changes to every container, and only its own entries, can be seen.
func deployment(name string, env ...corev1.EnvVar) *appsv1.Deployment {
	d := testbed.AppDeployment(name, appImage, append([]corev1.EnvVar{{Name: "OTHER", Value: "kept"}}, env...)...)
	spec := &d.Spec.Template.Spec
	spec.Containers = append(spec.Containers, corev1.Container{Name: "sidecar", Image: appImage, Command: []string{"sleep", "infinity"}})
	return d
}

func getDeployment(t *testing.T, env *testbed.Env, ns, name string) *appsv1.Deployment {
	t.Helper()
	d, err := env.Client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// envNamed returns every entry called name in a container.
func envNamed(c corev1.Container, name string) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, e := range c.Env {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func TestE2EAttachDetach(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := testbed.Context(t, 5*time.Minute)
	if r := env.Run(t, ns, "db", "create", "shop", "--storage", "1Gi"); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, deployment("web"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.AppsV1().Deployments(ns).Create(ctx, deployment("legacy", corev1.EnvVar{Name: "DATABASE_URL", Value: "postgres://elsewhere"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("attach twice: the variable appears once, from a secretKeyRef", func(t *testing.T) {
		first := env.Run(t, ns, "db", "attach", "shop", "--to", "deployment/web")
		if first.Code != 0 {
			t.Fatalf("attach: exit %d\n%s", first.Code, first.Stderr)
		}
		before := getDeployment(t, env, ns, "web")
		second := env.Run(t, ns, "db", "attach", "shop", "--to", "web", "-o", "json")
		if second.Code != 0 {
			t.Fatalf("second attach: exit %d\n%s", second.Code, second.Stderr)
		}
		var res database.AttachResult
		if err := json.Unmarshal([]byte(second.Stdout), &res); err != nil || res.Changed {
			t.Errorf("second attach reported a change (or bad JSON %v): %s", err, second.Stdout)
		}
		d := getDeployment(t, env, ns, "web")
		// generation, not resourceVersion: the controller writes the status meanwhile.
		if d.Generation != before.Generation || d.Annotations[database.AnnotationAttached] != before.Annotations[database.AnnotationAttached] {
			t.Errorf("the second attach changed the Deployment (generation %d → %d)", before.Generation, d.Generation)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			got := envNamed(c, "DATABASE_URL")
			if len(got) != 1 {
				t.Fatalf("container %s has %d DATABASE_URL entries: %+v", c.Name, len(got), c.Env)
			}
			e := got[0]
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
				e.ValueFrom.SecretKeyRef.Name != "shop-credentials" || e.ValueFrom.SecretKeyRef.Key != "DATABASE_URL" {
				t.Errorf("container %s: DATABASE_URL is not a secretKeyRef to shop-credentials: %+v", c.Name, e)
			}
		}
		if got := envNamed(d.Spec.Template.Spec.Containers[0], "OTHER"); len(got) != 1 || got[0].Value != "kept" {
			t.Errorf("attach touched another variable: %+v", d.Spec.Template.Spec.Containers[0].Env)
		}
		if d.Annotations[database.AnnotationAttached] != "shop=DATABASE_URL" || d.Labels[database.AttachedLabel("shop")] != "true" {
			t.Errorf("attachment not recorded: annotations %v labels %v", d.Annotations, d.Labels)
		}
		st := env.Run(t, ns, "db", "status", "shop")
		if st.Code != 0 || !strings.Contains(st.Stdout, "deployment/web (DATABASE_URL)") {
			t.Errorf("status does not list the attachment: exit %d\n%s%s", st.Code, st.Stdout, st.Stderr)
		}
	})

	t.Run("attach over a literal refuses without --overwrite", func(t *testing.T) {
		r := env.Run(t, ns, "db", "attach", "shop", "--to", "deployment/legacy")
		if r.Code != 6 || !strings.Contains(r.Stderr, "already sets DATABASE_URL from a literal value") || !strings.Contains(r.Stderr, "--overwrite") {
			t.Errorf("exit %d, want 6 with a clear message:\n%s", r.Code, r.Stderr)
		}
		if strings.Contains(r.Stderr, "elsewhere") {
			t.Errorf("the error prints the existing value:\n%s", r.Stderr)
		}
		d := getDeployment(t, env, ns, "legacy")
		if got := envNamed(d.Spec.Template.Spec.Containers[0], "DATABASE_URL"); len(got) != 1 || got[0].Value != "postgres://elsewhere" {
			t.Errorf("a refused attach changed the variable: %+v", got)
		}
		if _, ok := d.Annotations[database.AnnotationAttached]; ok {
			t.Errorf("a refused attach recorded an attachment")
		}
		r = env.Run(t, ns, "db", "attach", "shop", "--to", "deployment/legacy", "--overwrite")
		if r.Code != 0 {
			t.Fatalf("--overwrite: exit %d\n%s", r.Code, r.Stderr)
		}
		d = getDeployment(t, env, ns, "legacy")
		if got := envNamed(d.Spec.Template.Spec.Containers[0], "DATABASE_URL"); len(got) != 1 || got[0].ValueFrom == nil || got[0].Value != "" {
			t.Errorf("--overwrite did not replace the literal: %+v", got)
		}
	})

	t.Run("detach removes it", func(t *testing.T) {
		r := env.Run(t, ns, "db", "detach", "shop", "--from", "deployment/web")
		if r.Code != 0 {
			t.Fatalf("detach: exit %d\n%s", r.Code, r.Stderr)
		}
		d := getDeployment(t, env, ns, "web")
		for _, c := range d.Spec.Template.Spec.Containers {
			if got := envNamed(c, "DATABASE_URL"); len(got) != 0 {
				t.Errorf("container %s still has DATABASE_URL: %+v", c.Name, got)
			}
		}
		if got := envNamed(d.Spec.Template.Spec.Containers[0], "OTHER"); len(got) != 1 {
			t.Errorf("detach removed another variable: %+v", d.Spec.Template.Spec.Containers[0].Env)
		}
		if _, ok := d.Annotations[database.AnnotationAttached]; ok {
			t.Errorf("annotation left: %v", d.Annotations)
		}
		if _, ok := d.Labels[database.AttachedLabel("shop")]; ok {
			t.Errorf("label left: %v", d.Labels)
		}
		again := env.Run(t, ns, "db", "detach", "shop", "--from", "deployment/web")
		if again.Code != 0 || !strings.Contains(again.Stdout, "nothing changed") {
			t.Errorf("second detach: exit %d\n%s%s", again.Code, again.Stdout, again.Stderr)
		}
	})

	t.Run("missing workload and bad input", func(t *testing.T) {
		r := env.Run(t, ns, "db", "attach", "shop", "--to", "deployment/nope")
		if r.Code != 3 || !strings.Contains(r.Stderr, "deployment/nope not found") {
			t.Errorf("missing workload: exit %d\n%s", r.Code, r.Stderr)
		}
		if r := env.Run(t, ns, "db", "attach", "shop"); r.Code != 2 {
			t.Errorf("no --to: exit %d, want 2", r.Code)
		}
		if r := env.Run(t, ns, "db", "attach", "shop", "--to", "cronjob/x"); r.Code != 2 {
			t.Errorf("unsupported kind: exit %d, want 2\n%s", r.Code, r.Stderr)
		}
		if r := env.Run(t, ns, "db", "attach", "nodb", "--to", "web"); r.Code != 3 {
			t.Errorf("missing database: exit %d, want 3\n%s", r.Code, r.Stderr)
		}
	})
}
