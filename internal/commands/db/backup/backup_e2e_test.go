package backup_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/stackblaze/stackblaze/internal/testbed"
)

type listDoc struct {
	Backups []struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	} `json:"backups"`
	Window *struct {
		Earliest string `json:"earliest"`
		Latest   string `json:"latest"`
	} `json:"recoverableWindow"`
}

func TestE2EBackupCreateListRestoreSchedule(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	run := func(args ...string) testbed.Result {
		t.Helper()
		r := env.Run(t, ns, args...)
		return r
	}
	must := func(args ...string) testbed.Result {
		t.Helper()
		r := run(args...)
		if r.Code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, r.Code, r.Stdout, r.Stderr)
		}
		return r
	}
	psql := func(sql string) string {
		t.Helper()
		out, err := exec.Command(env.Kubectl(), "--kubeconfig", env.Kubeconfig, "-n", ns, "exec", "bk-0", "--",
			"psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql).CombinedOutput()
		if err != nil {
			t.Fatalf("psql %q: %v: %s", sql, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	must("db", "create", "bk", "--plan", "standard", "--storage", "1Gi")
	psql("create table t (i int)")
	psql("insert into t select generate_series(1, 10)")

	c := must("db", "backup", "create", "bk", "-o", "json")
	var created struct {
		Backup struct {
			ID   string `json:"id"`
			Size int64  `json:"sizeBytes"`
		} `json:"backup"`
		Duration float64 `json:"durationSeconds"`
	}
	if err := json.Unmarshal([]byte(c.Stdout), &created); err != nil || created.Backup.ID == "" || created.Backup.Size == 0 {
		t.Fatalf("backup create -o json: %v\n%s", err, c.Stdout)
	}
	psql("insert into t select generate_series(11, 20)")

	l := must("db", "backup", "list", "bk", "-o", "json")
	var doc listDoc
	if err := json.Unmarshal([]byte(l.Stdout), &doc); err != nil {
		t.Fatalf("list is not one JSON document: %v\n%s", err, l.Stdout)
	}
	if len(doc.Backups) != 1 || doc.Backups[0].ID != created.Backup.ID || doc.Window == nil {
		t.Fatalf("list: %+v", doc)
	}

	bad := run("db", "restore", "bk", "--backup", "20000101-000000F", "--yes")
	if bad.Code == 0 || !strings.Contains(bad.Stderr, created.Backup.ID) {
		t.Fatalf("unknown ID: exit %d, stderr should name %s:\n%s", bad.Code, created.Backup.ID, bad.Stderr)
	}
	old := run("db", "restore", "bk", "--to-time", "2000-01-01T00:00:00Z", "--yes")
	if old.Code != 2 || !strings.Contains(old.Stderr, "recoverable window is "+doc.Window.Earliest[:10]) {
		t.Fatalf("out-of-window time: exit %d:\n%s", old.Code, old.Stderr)
	}

	// Shell completion offers the backup IDs for restore --backup (cobra's __complete is what
	// the completion scripts call).
	// __complete must come first on the command line, so the global flags go after it.
	comp, err := exec.Command(env.Binary(t), "__complete", "db", "restore", "bk",
		"--kubeconfig", env.Kubeconfig, "-n", ns, "--backup", "").Output()
	if err != nil || !strings.Contains(string(comp), created.Backup.ID) {
		t.Fatalf("completion of restore --backup does not offer %s (%v):\n%s", created.Backup.ID, err, comp)
	}
	must("db", "restore", "bk", "--backup", created.Backup.ID, "--yes")
	if got := psql("select count(*) from t"); got != "10" {
		t.Fatalf("after in-place restore of %s: %s rows, want 10", created.Backup.ID, got)
	}

	must("db", "backup", "schedule", "bk", "--at", "02:30", "--image", "example.org/stackblaze:1.2.3")
	out, err := exec.Command(env.Kubectl(), "--kubeconfig", env.Kubeconfig, "-n", ns, "get", "cronjob", "bk-backup", "-o",
		"jsonpath={.spec.schedule}|{.spec.jobTemplate.spec.template.spec.containers[0].image}|{.spec.jobTemplate.spec.template.spec.serviceAccountName}").CombinedOutput()
	if err != nil || string(out) != "30 2 * * *|example.org/stackblaze:1.2.3|bk-backup" {
		t.Fatalf("cronjob: %v %s", err, out)
	}
	sa := "system:serviceaccount:" + ns + ":bk-backup"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "pods/bk-0"}, "yes"},
		{[]string{"create", "pods/bk-0", "--subresource=exec"}, "yes"},
		{[]string{"get", "statefulsets.apps/bk"}, "yes"},
		{[]string{"get", "pods/other-0"}, "no"},
		{[]string{"create", "pods/other-0", "--subresource=exec"}, "no"},
		{[]string{"get", "secrets/bk-superuser"}, "no"},
		{[]string{"list", "pods"}, "no"},
		{[]string{"delete", "pods/bk-0"}, "no"},
		{[]string{"patch", "statefulsets.apps/bk"}, "no"},
	} {
		args := append([]string{"--kubeconfig", env.Kubeconfig, "-n", ns, "auth", "can-i", "--as=" + sa}, c.args...)
		out, _ := exec.Command(env.Kubectl(), args...).CombinedOutput()
		if strings.TrimSpace(string(out)) != c.want {
			t.Errorf("can-i %v: %s, want %s", c.args, out, c.want)
		}
	}
}
