package buildinfo_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackblaze/stackblaze/internal/testbed"
)

// TestE2EReleaseSnapshot validates .goreleaser.yaml with goreleaser's own check, builds a snapshot
// for this machine with it, and runs the binary: `version` must show what the release build
// injected.
func TestE2EReleaseSnapshot(t *testing.T) {
	repo, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// goreleaser reads the commit from git and gives up on git metadata in a checkout without a
	// remote (as CI's may be). A clone of the committed tree has one, and is what a release
	// builds from anyway.
	root := filepath.Join(t.TempDir(), "src")
	if out, err := exec.Command("git", "clone", "-q", repo, root).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	goreleaser := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("bash", append([]string{filepath.Join(root, "hack", "goreleaser.sh")}, args...)...)
		cmd.Dir = root
		cmd.Env = os.Environ()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("goreleaser %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	goreleaser("check")

	bin := filepath.Join(t.TempDir(), "stackblaze")
	before := time.Now().UTC().Add(-time.Minute)
	goreleaser("build", "--snapshot", "--clean", "--single-target", "--output", bin)

	out, err := exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("snapshot binary: %v", err)
	}
	var v struct{ Version, Commit, Date string }
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("version -o json: %v\n%s", err, out)
	}
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v.Version, "-snapshot+") {
		t.Errorf("version %q is not the snapshot version goreleaser injects", v.Version)
	}
	if v.Commit != strings.TrimSpace(string(head)) {
		t.Errorf("commit %q, want HEAD %s", v.Commit, head)
	}
	date, err := time.Parse(time.RFC3339, v.Date)
	if err != nil || date.Before(before) {
		t.Errorf("date %q is not the build's time (%v)", v.Date, err)
	}
	text, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.Contains(string(text), v.Version) {
		t.Errorf("`version` does not show the injected version: %q %v", text, err)
	}
}
