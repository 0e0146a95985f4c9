package commands_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/stackblaze/stackblaze/internal/commands"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/output"
)

// cliHelperEnv makes the test binary, run by cliProcess, be the stackblaze command line.
const cliHelperEnv = "TEST_HELPER_STACKBLAZE_CLI"

// TestHelperCLI is not a test: run by cliProcess, it is the stackblaze command line (exactly what
// cmd/stackblaze runs: the production Factory, the real environment and working directory) with
// the arguments after "--".
func TestHelperCLI(t *testing.T) {
	if os.Getenv(cliHelperEnv) != "1" {
		t.Skip("the stackblaze command line for cliProcess")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	os.Exit(commands.Main(context.Background(), output.System(), args))
}

// cliProcess runs the command line in a process of its own, in dir, with only env (and PATH):
// HOME and XDG_CONFIG_HOME point at an empty directory unless env says otherwise.
func cliProcess(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"-test.run=^TestHelperCLI$", "--"}, args...)...)
	cmd.Dir = dir
	home := t.TempDir()
	cmd.Env = append([]string{cliHelperEnv + "=1", "PATH=" + os.Getenv("PATH"), "CI=true", "NO_COLOR=1",
		"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config")}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("stackblaze %s (in %s) -> exit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), dir, r.code, r.stdout, r.stderr)
	return r
}

// fakeAPIServer answers the statefulset list of `db list` with no databases and records the
// namespaces asked for. It serves HTTPS (client-go runs an exec plugin only for a TLS server);
// caPEM is its certificate.
func fakeAPIServer(t *testing.T) (url string, caPEM []byte, asked func() []string) {
	t.Helper()
	var mu sync.Mutex
	var namespaces []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		// /apis/apps/v1/namespaces/NS/statefulsets
		if len(parts) != 6 || parts[3] != "namespaces" || parts[5] != "statefulsets" {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer from-the-plugin" {
			http.Error(w, "no token from the exec plugin", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		namespaces = append(namespaces, parts[4])
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"StatefulSetList","apiVersion":"apps/v1","metadata":{},"items":[]}`)
	}))
	t.Cleanup(srv.Close)
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv.URL, caPEM, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), namespaces...)
	}
}

// execPluginKubeconfig writes a kubeconfig for server whose user's credentials come from an exec
// plugin that creates marker: the marker exists once anything has built a client from it and
// talked to the cluster.
func execPluginKubeconfig(t *testing.T, server string, caPEM []byte, marker string) string {
	t.Helper()
	cred := `{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"from-the-plugin"}}`
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
		APIVersion:      "client.authentication.k8s.io/v1",
		Command:         "/bin/sh",
		Args:            []string{"-c", `touch "$0" && printf '%s\n' "$1"`, marker, cred},
		InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
	}}
	cfg.Contexts["repo"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u", Namespace: "from-context"}
	cfg.CurrentContext = "repo"
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// A .stackblaze.yaml that came with a repository cannot choose the cluster, the image, where
// backups go or whether to ask: the binary refuses it (exit 2, naming the key and where it
// belongs) before it builds a Kubernetes client. What a project file may set still works.
func TestProjectFileCannotChooseClusterImageBackupsOrYes(t *testing.T) {
	t.Parallel()
	server, caPEM, asked := fakeAPIServer(t)
	marker := filepath.Join(t.TempDir(), "exec-plugin-ran")
	kc := execPluginKubeconfig(t, server, caPEM, marker)

	// The kubeconfig works, and its plugin runs, when the user names it.
	r := cliProcess(t, t.TempDir(), nil, "--kubeconfig", kc, "db", "list", "-o", "json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("db list with the user's --kubeconfig: exit %d, stdout %q", r.code, r.stdout)
	}
	if !exists(marker) || len(asked()) != 1 {
		t.Fatalf("the exec plugin did not run (marker %v) or the cluster was not asked (%v): this test would prove nothing", exists(marker), asked())
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}

	values := map[string]string{"kubeconfig": kc, "context": "repo", "yes": "true", "backup_s3_uri_style": "path"}
	refused := 0
	for _, k := range cmdutil.ConfigKeys {
		if k.UserOnly == "" {
			continue
		}
		refused++
		value := values[k.Key]
		if value == "" {
			value = "chosen-by-the-repository"
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ".stackblaze.yaml"), []byte(fmt.Sprintf("namespace: shop\n%s: %q\n", k.Key, value)), 0o644); err != nil {
			t.Fatal(err)
		}
		// For the other keys the user's own settings name the plugin's kubeconfig, so that a
		// command that went on would run it too.
		xdg := t.TempDir()
		env := []string{"XDG_CONFIG_HOME=" + xdg}
		if k.Key != "kubeconfig" {
			env = append(env, "STACKBLAZE_KUBECONFIG="+kc)
		}
		r := cliProcess(t, dir, env, "db", "list")
		if r.code != cmdutil.ExitUsage {
			t.Errorf("%s in .stackblaze.yaml: exit %d, want 2", k.Key, r.code)
		}
		for _, want := range []string{
			filepath.Join(dir, ".stackblaze.yaml") + " sets " + k.Key + " (",
			"which a project-local config file may not set",
			"put " + k.Key + " in your own config file " + filepath.Join(xdg, "stackblaze", "config.yaml"),
			k.EnvName(),
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("%s in .stackblaze.yaml: stderr does not say %q:\n%s", k.Key, want, r.stderr)
			}
		}
		if exists(marker) {
			t.Fatalf("%s in .stackblaze.yaml: the kubeconfig's exec plugin ran: a client was built", k.Key)
		}
		if r.stdout != "" {
			t.Errorf("%s in .stackblaze.yaml: stdout %q", k.Key, r.stdout)
		}
	}
	if refused < 11 {
		t.Errorf("only %d keys are refused in a project file", refused)
	}
	if n := len(asked()); n != 1 {
		t.Errorf("the cluster was asked %d times, want only the first run's", n)
	}

	// What a project file may set is taken: the namespace (over the context's) and the format.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".stackblaze.yaml"), []byte("namespace: from-project\noutput: json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = cliProcess(t, dir, []string{"STACKBLAZE_KUBECONFIG=" + kc}, "db", "list")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("allowed keys: exit %d, stdout %q (want the JSON of output: json)", r.code, r.stdout)
	}
	if got := asked(); len(got) != 2 || got[1] != "from-project" {
		t.Errorf("namespaces asked for: %v, want from-project last", got)
	}
}
