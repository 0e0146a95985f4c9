package docgen_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackblaze/stackblaze/internal/testbed"
)

// TestE2EBashCompletionListsDatabases types `stackblaze db status ` and TAB in a real bash with
// bash-completion and the checked-in completions/stackblaze.bash, under tmux, and reads the
// screen: the databases of the test bed namespace are offered.
func TestE2EBashCompletionListsDatabases(t *testing.T) {
	env := testbed.Require(t)
	for _, tool := range []string{"tmux", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make deps installs it): %v", tool, err)
		}
	}
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Fatalf("bash-completion is not installed (make deps installs it): %v", err)
	}
	ns := env.Namespace(t, nil)
	for _, name := range []string{"alpha-shop", "beta-blog"} {
		if r := env.Run(t, ns, "db", "create", name, "--storage", "1Gi", "--no-wait"); r.Code != 0 {
			t.Fatalf("create %s: exit %d\n%s", name, r.Code, r.Stderr)
		}
	}
	binDir := t.TempDir()
	if err := os.Symlink(env.Binary(t), filepath.Join(binDir, "stackblaze")); err != nil {
		t.Fatal(err)
	}
	socket := "sbtest-" + filepath.Base(t.TempDir())
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-L", socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	home := t.TempDir()
	tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "160", "-y", "40",
		"-e", "HOME="+home, "-e", "TERM=xterm", "-e", "PS1=$ ",
		"bash --norc --noprofile")
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", socket, "kill-server").Run() })
	setup := strings.Join([]string{
		"source " + bashCompletion,
		"source " + filepath.Join(env.Root, "completions", "stackblaze.bash"),
		"export PATH=" + binDir + ":$PATH KUBECONFIG=" + env.Kubeconfig + " STACKBLAZE_NAMESPACE=" + ns,
		"clear",
	}, "; ")
	tmux("send-keys", "-t", "t", setup, "Enter")
	tmux("send-keys", "-t", "t", "stackblaze db status ", "Tab", "Tab")

	deadline := time.Now().Add(30 * time.Second)
	var screen string
	for time.Now().Before(deadline) {
		screen = tmux("capture-pane", "-p", "-t", "t")
		if strings.Contains(screen, "alpha-shop") && strings.Contains(screen, "beta-blog") {
			return
		}
		time.Sleep(200 * time.Millisecond) // reading a screen has no event to wait on
	}
	t.Fatalf("TAB did not offer the databases; the screen was:\n%s", screen)
}
