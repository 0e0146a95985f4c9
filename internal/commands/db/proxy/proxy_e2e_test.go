package proxy_test

import (
	"bufio"
	"context"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// runningProxy is a `db proxy` process started by startProxy.
type runningProxy struct {
	cmd    *exec.Cmd
	stderr *strings.Builder
	// url is the connection string the proxy printed, with the password masked.
	url      *url.URL
	password string
}

// startProxy runs `db proxy NAME` as a real process (killed when the test ends), reads the
// connection string it prints, and checks that it masks the password of the Secret.
func startProxy(t *testing.T, env *testbed.Env, ns, name string) *runningProxy {
	t.Helper()
	ctx := testbed.Context(t, time.Minute)
	secret, err := env.Client.CoreV1().Secrets(ns).Get(ctx, name+"-credentials", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := &runningProxy{cmd: env.Command(t, ns, "db", "proxy", name), stderr: &strings.Builder{}, password: string(secret.Data["password"])}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("proxy printed no connection string: %v\n%s", err, p.stderr.String())
	}
	if strings.Contains(line, p.password) || !strings.Contains(line, "********") {
		t.Fatalf("the connection string must mask the password: %q", line)
	}
	if p.url, err = url.Parse(strings.TrimSpace(strings.Replace(line, "********", "x", 1))); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestE2EProxySurvivesPodReplacement runs `db proxy` as a real process, deletes the database's
// pod under it, and connects again through the same port once the new pod is ready.
func TestE2EProxySurvivesPodReplacement(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	if r := env.Run(t, ns, "db", "create", "app", "--storage", "1Gi"); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	ctx := testbed.Context(t, 3*time.Minute)
	proxy := startProxy(t, env, ns, "app")
	cmd, stderr, password, addr := proxy.cmd, proxy.stderr, proxy.password, proxy.url.Host

	connect := func() (*pgx.Conn, error) {
		cfg, err := pgx.ParseConfig("sslmode=disable connect_timeout=60")
		if err != nil {
			return nil, err
		}
		host, port, _ := net.SplitHostPort(addr)
		cfg.Host, cfg.User, cfg.Password, cfg.Database = host, "app", password, "app"
		n, err := strconv.Atoi(port)
		if err != nil {
			return nil, err
		}
		cfg.Port = uint16(n)
		return pgx.ConnectConfig(ctx, cfg)
	}
	before, err := connect()
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	var pid1 int
	if err := before.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}

	old, err := env.Client.CoreV1().Pods(ns).Get(ctx, "app-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.CoreV1().Pods(ns).Delete(ctx, "app-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := testbed.WaitPod(ctx, env.Client, ns, "app-0", func(p *corev1.Pod) bool {
		return kube.PodReady(p) && p.UID != old.UID
	}); err != nil {
		t.Fatal(err)
	}
	// The connection that was open on the old pod ends cleanly: an error, not a hang.
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = before.Exec(qctx, "SELECT 1")
	hung := qctx.Err() != nil
	cancel()
	if err == nil {
		t.Fatal("a connection to the deleted pod still answered")
	}
	if hung {
		t.Fatal("the connection to the deleted pod hung instead of failing")
	}

	after, err := connect()
	if err != nil {
		t.Fatalf("connect through the same proxy after the pod was replaced: %v\n%s", err, stderr.String())
	}
	defer after.Close(ctx)
	var one int
	if err := after.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("query after the pod was replaced: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() != 0 {
		t.Fatalf("proxy exit %d after Ctrl-C\n%s", ee.ExitCode(), stderr.String())
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the proxy's port %s still listens after it exited", addr)
	}
	if strings.Contains(stderr.String(), password) {
		t.Fatal("the password is in the proxy's output")
	}
}
