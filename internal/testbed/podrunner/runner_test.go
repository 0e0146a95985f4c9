package podrunner

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestIsPostgresImage(t *testing.T) {
	for image, want := range map[string]bool{
		"postgres:16":                          true,
		"postgres":                             true,
		"docker.io/library/postgres:15-alpine": true,
		"registry.example/team/postgres-pgbackrest:16@sha256:abc": true,
		"nginx:1.27":                       false,
		"postgres-team/nginx:1":            false,
		"busybox":                          false,
		"registry.example:5000/web:latest": false,
	} {
		if got := isPostgresImage(image); got != want {
			t.Errorf("isPostgresImage(%q) = %v, want %v", image, got, want)
		}
	}
}

func TestServerSettings(t *testing.T) {
	c := &corev1.Container{
		Command: []string{"docker-entrypoint.sh", "postgres"},
		Args: []string{"-c", "log_statement=all", "-c", "listen_addresses=*", "--archive_timeout=300",
			"-c", "port=6000", "-c", "shared_buffers=64MB"},
	}
	want := []string{"-c", "log_statement=all", "-c", "archive_timeout=300", "-c", "shared_buffers=64MB"}
	if got := serverSettings(c); !reflect.DeepEqual(got, want) {
		t.Fatalf("serverSettings = %v, want %v", got, want)
	}
}

func TestExpandAndRemap(t *testing.T) {
	if got := expand("postgres://$(USER)@x/$(DB)", map[string]string{"USER": "app", "DB": "shop"}); got != "postgres://app@x/shop" {
		t.Fatalf("expand = %q", got)
	}
	files := map[string][]byte{"a": []byte("1"), "b": []byte("2")}
	remap(files, []corev1.KeyToPath{{Key: "b", Path: "10-b.sql"}})
	if len(files) != 1 || string(files["10-b.sql"]) != "2" {
		t.Fatalf("remap = %v", files)
	}
}
