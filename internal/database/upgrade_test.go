package database

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestValidateUpgrade(t *testing.T) {
	for _, to := range []string{"17", "16", "18"} {
		if _, err := ValidateUpgrade(15, to); err != nil {
			t.Errorf("15 → %s: %v", to, err)
		}
	}
	for _, tc := range []struct {
		from int
		to   string
		want []string
	}{
		{17, "15", []string{"downgrade", "use 18", "--revert"}},
		{17, "17", []string{"the version it runs", "use 18"}},
		{15, "14", []string{"not supported", "15, 16, 17 or 18"}},
		{15, "x", []string{"not supported"}},
		{18, "18", []string{"nothing to upgrade to"}},
	} {
		_, err := ValidateUpgrade(tc.from, tc.to)
		var ie *InputError
		if err == nil || !asInput(err, &ie) {
			t.Errorf("%d → %s: %v, want an InputError", tc.from, tc.to, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%d → %s: %q does not say %q", tc.from, tc.to, err, w)
			}
		}
	}
}

func asInput(err error, ie **InputError) bool {
	e, ok := err.(*InputError)
	*ie = e
	return ok
}

func TestUpgradeRecord(t *testing.T) {
	r := &UpgradeRecord{From: 15, To: 17, Phase: UpgradeStopped, Stopped: time.Unix(100, 0)}
	if !r.InProgress() || r.Outage() != 0 || !r.reached(UpgradeBackedUp) || r.reached(UpgradeUpgraded) {
		t.Errorf("a stopped upgrade: in progress %v, outage %v", r.InProgress(), r.Outage())
	}
	r.Up, r.Phase = time.Unix(112, 0), UpgradeDone
	if r.InProgress() || r.Outage() != 12*time.Second {
		t.Errorf("a done upgrade: in progress %v, outage %v", r.InProgress(), r.Outage())
	}
	var none *UpgradeRecord
	if none.InProgress() {
		t.Error("no record is in progress")
	}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationUpgrade: `{"from":15,"to":17,"phase":"done"}`}}}
	if got, err := UpgradeOf(sts); err != nil || got.From != 15 || got.Phase != UpgradeDone {
		t.Errorf("UpgradeOf: %+v %v", got, err)
	}
}

func TestImageFor(t *testing.T) {
	for img, want := range map[string]string{
		"stackblaze/postgres:15":                "stackblaze/postgres:17",
		"mirror.internal:5000/team/postgres:15": "mirror.internal:5000/team/postgres:17",
		"localhost:5000/postgres":               "localhost:5000/postgres:17",
	} {
		sts := &appsv1.StatefulSet{}
		sts.Spec.Template.Spec.Containers = []corev1.Container{{Name: ContainerName, Image: img}}
		if got := ImageFor(sts, 17); got != want {
			t.Errorf("%s: %s, want %s", img, got, want)
		}
	}
}

// The check pod runs on the database's node with its data volume read-only and no fsGroup (the
// kubelet must not change the ownership of a live data directory); the run pod mounts the data
// and backup volumes writable; both get the old major's binaries from an init container of the
// old image.
func TestUpgradePodSpec(t *testing.T) {
	spec, _, err := SpecOf("shop", "15", "1Gi", "hobby")
	if err != nil {
		t.Fatal(err)
	}
	spec.Namespace = "ns"
	sts := builtStatefulSet(t, spec)
	check := upgradePodSpec(sts, UpgradeCheckPodName("shop"), "stackblaze/postgres:15", "stackblaze/postgres:17", []string{"check"}, nil, "node-a")
	if check.Spec.NodeName != "node-a" || check.Spec.SecurityContext.FSGroup != nil || check.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("check pod spec: node %q, fsGroup %v, restart %s", check.Spec.NodeName, check.Spec.SecurityContext.FSGroup, check.Spec.RestartPolicy)
	}
	if ic := check.Spec.InitContainers; len(ic) != 1 || ic[0].Image != "stackblaze/postgres:15" || check.Spec.Containers[0].Image != "stackblaze/postgres:17" {
		t.Errorf("images: init %+v, main %s", ic, check.Spec.Containers[0].Image)
	}
	mounts := func(p *corev1.Pod) map[string]bool {
		m := map[string]bool{}
		for _, vm := range p.Spec.Containers[0].VolumeMounts {
			m[vm.Name] = vm.ReadOnly
		}
		return m
	}
	if m := mounts(check); !m["data"] || len(m) != 2 {
		t.Errorf("check pod mounts %v: the data volume read-only and the old binaries only", m)
	}
	for _, v := range check.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && v.Name == "data" && (!v.PersistentVolumeClaim.ReadOnly || v.PersistentVolumeClaim.ClaimName != PVCName("shop")) {
			t.Errorf("data volume %+v", v)
		}
	}
	run := upgradePodSpec(sts, UpgradePodName("shop"), "stackblaze/postgres:15", "stackblaze/postgres:17", []string{"run"}, nil, "")
	if m := mounts(run); m["data"] || m["backup"] || len(m) != 3 {
		t.Errorf("run pod mounts %v: data and backup writable", m)
	}
	env := map[string]bool{}
	for _, e := range run.Spec.Containers[0].Env {
		env[e.Name] = true
	}
	if !env["PGDATA"] || !env["PGBACKREST_REPO1_PATH"] || !env["STANZA"] || !env["OLD_BINARIES"] || env["POSTGRES_PASSWORD"] {
		t.Errorf("run pod env %v", env)
	}
	if !strings.Contains(strings.Join(run.Spec.Containers[0].Command, " "), "pg_upgrade") {
		t.Error("the run pod's command is not the upgrade script")
	}
	if run.Labels[LabelUpgrade] != "run" || !IsOwnedBy(run.Labels, "shop") {
		t.Errorf("run pod labels %v", run.Labels)
	}
}

// builtStatefulSet is the StatefulSet create would write for spec, as the API returns it.
func builtStatefulSet(t *testing.T, spec Spec) *appsv1.StatefulSet {
	t.Helper()
	b, err := json.Marshal(BuildObjects(spec, Credentials{}, 1).StatefulSet)
	if err != nil {
		t.Fatal(err)
	}
	sts := &appsv1.StatefulSet{}
	if err := json.Unmarshal(b, sts); err != nil {
		t.Fatal(err)
	}
	return sts
}
