package database

import (
	"encoding/json"
	"math"
	"net/url"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func testSpec() Spec {
	p, _ := LookupPlan("standard")
	return Spec{Name: "my-db", Namespace: "shop", Version: 16, Storage: resource.MustParse("10Gi"), Plan: p}
}

// decode turns an apply configuration into the typed object it describes.
func decode[T any](t *testing.T, ac any) *T {
	t.Helper()
	b, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func TestNewPasswordEntropy(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 50 {
		p, err := NewPassword()
		if err != nil {
			t.Fatal(err)
		}
		// base64url: 6 bits per character
		if bits := float64(len(p)) * math.Log2(64); bits < 190 {
			t.Fatalf("password of %d characters carries %.0f bits, want >= 190", len(p), bits)
		}
		if strings.Trim(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Fatalf("password %q has characters that need escaping in a URL", p)
		}
		if seen[p] {
			t.Fatal("password repeated")
		}
		seen[p] = true
	}
}

func TestBuildObjects(t *testing.T) {
	t.Parallel()
	s := testSpec()
	c := Credentials{Username: "my_db", Password: "app-secret", Database: "my_db", SuperuserPassword: "super-secret"}
	o := BuildObjects(s, c, 1)

	sts := decode[appsv1.StatefulSet](t, o.StatefulSet)
	for _, obj := range []map[string]string{
		sts.Labels, sts.Spec.Template.Labels, sts.Spec.VolumeClaimTemplates[0].Labels,
		decode[corev1.Service](t, o.Service).Labels, decode[corev1.Service](t, o.HeadlessService).Labels,
		decode[corev1.Secret](t, o.CredentialsSecret).Labels, decode[corev1.Secret](t, o.SuperuserSecret).Labels,
		decode[networkingv1.NetworkPolicy](t, o.NetworkPolicy).Labels, decode[corev1.ConfigMap](t, o.InitConfigMap).Labels,
	} {
		for k, v := range Labels("my-db") {
			if obj[k] != v {
				t.Errorf("label %s=%q, want %q (labels %v)", k, obj[k], v, obj)
			}
		}
	}

	if *sts.Spec.Replicas != 1 || sts.Spec.ServiceName != "my-db-headless" {
		t.Errorf("replicas %d serviceName %s", *sts.Spec.Replicas, sts.Spec.ServiceName)
	}
	vct := sts.Spec.VolumeClaimTemplates[0]
	if vct.Name != "data" || vct.Spec.StorageClassName != nil || vct.Spec.Resources.Requests.Storage().String() != "10Gi" {
		t.Errorf("volume claim template: %+v", vct)
	}
	pod := sts.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil || *psc.RunAsUser != 999 || *psc.RunAsGroup != 999 || *psc.FSGroup != 999 || !*psc.RunAsNonRoot ||
		psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext: %+v", psc)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < 30 {
		t.Errorf("terminationGracePeriodSeconds too short")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	ctr := pod.Containers[0]
	if ctr.Name != "postgres" || ctr.Image != "stackblaze/postgres:16" {
		t.Errorf("container %s image %s", ctr.Name, ctr.Image)
	}
	sc := ctr.SecurityContext
	if sc == nil || *sc.AllowPrivilegeEscalation || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
		!*sc.RunAsNonRoot || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container securityContext: %+v", sc)
	}
	if ctr.ReadinessProbe == nil || ctr.ReadinessProbe.Exec == nil || ctr.ReadinessProbe.Exec.Command[0] != "pg_isready" {
		t.Errorf("readiness probe: %+v", ctr.ReadinessProbe)
	}
	if ctr.StartupProbe == nil || ctr.LivenessProbe == nil {
		t.Error("startup and liveness probes are missing")
	}
	if ctr.Resources.Limits.Memory().String() != "2Gi" || ctr.Resources.Requests.Cpu().String() != "1" {
		t.Errorf("resources: %+v", ctr.Resources)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range ctr.Env {
		env[e.Name] = e
		if strings.Contains(e.Value, "secret") {
			t.Errorf("env %s carries a literal secret", e.Name)
		}
	}
	if env["PGDATA"].Value != "/var/lib/postgresql/data/pgdata" {
		t.Errorf("PGDATA = %q", env["PGDATA"].Value)
	}
	if _, ok := env["APP_PASSWORD"]; ok {
		t.Error("the container gets the application's password; it must get only its verifier")
	}
	for name, ref := range map[string][2]string{
		"POSTGRES_PASSWORD":     {"my-db-superuser", "password"},
		"APP_PASSWORD_VERIFIER": {"my-db-superuser", "app-verifier"},
		"APP_USER":              {"my-db-credentials", "username"},
		"APP_DATABASE":          {"my-db-credentials", "database"},
	} {
		e := env[name]
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != ref[0] || e.ValueFrom.SecretKeyRef.Key != ref[1] {
			t.Errorf("env %s = %+v, want secretKeyRef %v", name, e, ref)
		}
	}
	mounts := map[string]string{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["data"] != "/var/lib/postgresql/data" || mounts["init"] != "/docker-entrypoint-initdb.d" || mounts["shm"] != "/dev/shm" {
		t.Errorf("mounts %v", mounts)
	}
	for _, v := range pod.Volumes {
		if v.Name == "shm" && (v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory || v.EmptyDir.SizeLimit.String() != "512Mi") {
			t.Errorf("shm volume %+v", v)
		}
		if v.HostPath != nil {
			t.Errorf("hostPath volume %s is not allowed by the restricted profile", v.Name)
		}
	}

	svc := decode[corev1.Service](t, o.Service)
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.Ports[0].Port != 5432 {
		t.Errorf("service %+v", svc.Spec)
	}
	if h := decode[corev1.Service](t, o.HeadlessService); h.Spec.ClusterIP != "None" {
		t.Errorf("headless clusterIP %q", h.Spec.ClusterIP)
	}

	np := decode[networkingv1.NetworkPolicy](t, o.NetworkPolicy)
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 {
		t.Fatalf("network policy %+v", np.Spec)
	}
	from := np.Spec.Ingress[0].From[0]
	if from.PodSelector == nil || len(from.PodSelector.MatchLabels) != 0 || from.NamespaceSelector != nil || from.IPBlock != nil {
		t.Errorf("network policy peer %+v, want only pods of the same namespace", from)
	}
	if np.Spec.Ingress[0].Ports[0].Port.IntValue() != 5432 {
		t.Errorf("network policy port %v", np.Spec.Ingress[0].Ports[0].Port)
	}

	sec := decode[corev1.Secret](t, o.CredentialsSecret)
	for _, k := range []string{"username", "password", "database", "host", "port", "DATABASE_URL"} {
		if len(sec.Data[k]) == 0 {
			t.Errorf("credentials secret lacks %s", k)
		}
	}
	u, err := url.Parse(string(sec.Data["DATABASE_URL"]))
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	if u.Host != "my-db.shop.svc.cluster.local:5432" || u.Path != "/my_db" || pw != "app-secret" || u.User.Username() != "my_db" {
		t.Errorf("DATABASE_URL %s", sec.Data["DATABASE_URL"])
	}

	cm := decode[corev1.ConfigMap](t, o.InitConfigMap)
	script := cm.Data["10-app-role.sh"]
	if !strings.Contains(script, `\getenv app_verifier APP_PASSWORD_VERIFIER`) || strings.Contains(script, "app-secret") {
		t.Errorf("init script:\n%s", script)
	}
}

func TestBuildObjectsKeepsReplicas(t *testing.T) {
	t.Parallel()
	sts := decode[appsv1.StatefulSet](t, BuildObjects(testSpec(), Credentials{}, 0).StatefulSet)
	if *sts.Spec.Replicas != 0 {
		t.Errorf("replicas %d, want 0", *sts.Spec.Replicas)
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	s := testSpec()
	sts := decode[appsv1.StatefulSet](t, BuildObjects(s, Credentials{}, 1).StatefulSet)
	if d := Diff(sts, s); len(d) != 0 {
		t.Errorf("same spec differs: %v", d)
	}
	other := s
	other.Storage = resource.MustParse("20Gi")
	other.Version = 15
	d := Diff(sts, other)
	if len(d) != 2 || !strings.Contains(strings.Join(d, ";"), "storage: 10Gi in the cluster, 20Gi requested") {
		t.Errorf("diff %v", d)
	}
}

func toJSON(v any) ([]byte, error)   { return json.Marshal(v) }
func fromJSON(b []byte, v any) error { return json.Unmarshal(b, v) }
