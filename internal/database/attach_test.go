package database

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseWorkload(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]WorkloadRef{
		"web":                {KindDeployment, "web"},
		"deployment/web":     {KindDeployment, "web"},
		"deploy/web":         {KindDeployment, "web"},
		"Deployments/web":    {KindDeployment, "web"},
		"statefulset/worker": {KindStatefulSet, "worker"},
		"sts/worker":         {KindStatefulSet, "worker"},
	} {
		got, err := ParseWorkload(in)
		if err != nil || got != want {
			t.Errorf("%q: %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "cronjob/x", "deployment/", "deployment/Web", "a/b/c"} {
		if _, err := ParseWorkload(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAttachmentsAnnotation(t *testing.T) {
	t.Parallel()
	got := ParseAttachments(" b=X, a=DATABASE_URL,broken,=Y")
	want := [][2]string{{"b", "X"}, {"a", "DATABASE_URL"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parse: %v", got)
	}
	if s := formatAttachments(append(got, [2]string{"a", "DATABASE_URL"})); s != "a=DATABASE_URL,b=X" {
		t.Errorf("format (sorted, no duplicates): %q", s)
	}
	if formatAttachments(nil) != "" {
		t.Errorf("empty")
	}
}

func TestIsOurs(t *testing.T) {
	t.Parallel()
	ref := func(secret, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: "DATABASE_URL", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}}
	}
	if !isOurs(ref("shop-credentials", "DATABASE_URL"), "shop") {
		t.Errorf("our entry not recognised")
	}
	for _, e := range []corev1.EnvVar{ref("other-credentials", "DATABASE_URL"), ref("shop-credentials", "password"), {Name: "DATABASE_URL", Value: "x"}} {
		if isOurs(e, "shop") {
			t.Errorf("%+v taken for ours", e)
		}
	}
}

func TestStandbyRole(t *testing.T) {
	t.Parallel()
	if StandbyRole("my-db", "my_db") != "my_db_b" || StandbyRole("my-db", "my_db_b") != "my_db" {
		t.Errorf("standby roles do not alternate")
	}
}
