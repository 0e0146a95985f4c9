package database_test

import (
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/pg"
	"github.com/stackblaze/stackblaze/internal/testbed"
	"github.com/stackblaze/stackblaze/internal/tunnel"
)

// A new database whose server logs every statement from its first start (log_statement=all,
// log_connections): its log holds the statements that made the application's role, and
// neither password.
func TestE2EFirstPasswordNeverInTheServerLog(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := testbed.Context(t, 5*time.Minute)
	c := &kube.Client{Clientset: env.Client, REST: env.REST, Namespace: ns}
	plan, _ := database.LookupPlan("hobby")
	spec := database.Spec{Name: "logged", Version: database.DefaultVersion, Storage: resource.MustParse("1Gi"), Plan: plan,
		Settings: []string{"log_statement=all", "log_connections=on"}}
	p, err := database.Provision(ctx, c, database.ProvisionOptions{Spec: spec, Timeout: 4 * time.Minute, OpenTunnel: tunnel.Opener(t.Logf), CheckLogin: pg.CheckLogin})
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	if !p.Ready {
		t.Fatal("provision did not wait for the login")
	}
	super, err := database.ReadSuperuserPassword(ctx, env.Client, ns, "logged")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := env.Client.CoreV1().Pods(ns).GetLogs(database.PodName("logged"), &corev1.PodLogOptions{Container: database.ContainerName}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	// The log is the one under test: the first start's statements are in it.
	for _, want := range []string{"statement: CREATE ROLE", "PASSWORD 'SCRAM-SHA-256$", "connection authorized: user=" + p.Credentials.Username} {
		if !strings.Contains(log, want) {
			t.Errorf("the server log lacks %q: the test does not see what the first start sent\n%s", want, log)
		}
	}
	for what, secret := range map[string]string{"the application's password": p.Credentials.Password, "the superuser's password": super} {
		if secret == "" || strings.Contains(log, secret) {
			t.Errorf("the server log holds %s", what)
		}
	}
	pod, err := env.Client.CoreV1().Pods(ns).Get(ctx, database.PodName("logged"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ctr := range pod.Spec.Containers {
		for _, e := range ctr.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == database.CredentialsSecretName("logged") && e.ValueFrom.SecretKeyRef.Key == "password" {
				t.Errorf("the database container gets the application's password (env %s)", e.Name)
			}
		}
	}
}
