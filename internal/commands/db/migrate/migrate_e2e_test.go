package migrate_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// createDB makes a database with the real binary and fails the test when it does not work.
func createDB(t *testing.T, env *testbed.Env, ns, name string) {
	t.Helper()
	res := env.Run(t, ns, "db", "create", name, "--storage", "1Gi")
	if res.Code != 0 {
		t.Fatalf("create %s: exit %d\n%s", name, res.Code, res.Stderr)
	}
}

// tools is where hack/e2e-tools.sh installed goose and node-pg-migrate.
func tools(t *testing.T, env *testbed.Env) string {
	t.Helper()
	dir := os.Getenv("STACKBLAZE_E2E_TOOLS")
	if dir == "" {
		out, err := exec.Command("bash", filepath.Join(env.Root, "hack", "e2e-tools.sh")).Output()
		if err != nil {
			t.Fatalf("install the migration tools (hack/e2e-tools.sh): %v", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	return filepath.Join(dir, "bin")
}

func TestE2EMigrateRunsRealMigrationTools(t *testing.T) {
	env := testbed.Require(t)
	bin := tools(t, env)
	ns := env.Namespace(t, nil)
	createDB(t, env, ns, "gooseapp")
	createDB(t, env, ns, "nodeapp")
	testdata, _ := filepath.Abs("testdata")

	t.Run("goose from the Go module proxy", func(t *testing.T) {
		// goose's pgx driver reads PGHOST, PGPORT, PGUSER and PGPASSWORD when the DSN is empty: no
		// password on any command line.
		goose := []string{"db", "migrate", "gooseapp", "--", filepath.Join(bin, "goose"), "-dir", filepath.Join(testdata, "goose"), "postgres", "", "up"}
		first := env.Run(t, ns, goose...)
		if first.Code != 0 {
			t.Fatalf("first goose run: exit %d\nstdout:\n%s\nstderr:\n%s", first.Code, first.Stdout, first.Stderr)
		}
		if !strings.Contains(first.Stderr, "2 migrations found (goose), 2 applied by this run: 1, 2") {
			t.Fatalf("first run's summary is missing:\n%s", first.Stderr)
		}
		if !strings.Contains(first.Stdout+first.Stderr, "00002_add_email.sql") {
			t.Fatalf("goose's own output did not pass through:\n%s\n%s", first.Stdout, first.Stderr)
		}
		second := env.Run(t, ns, goose...)
		if second.Code != 0 || !strings.Contains(second.Stderr, "2 migrations found (goose), none applied by this run") {
			t.Fatalf("second goose run: exit %d\n%s", second.Code, second.Stderr)
		}
	})

	t.Run("node-pg-migrate from npm", func(t *testing.T) {
		npm := []string{"db", "migrate", "nodeapp", "--", filepath.Join(bin, "node-pg-migrate"), "up", "-m", filepath.Join(testdata, "node-pg-migrate")}
		first := env.Run(t, ns, npm...)
		if first.Code != 0 {
			t.Fatalf("first node-pg-migrate run: exit %d\nstdout:\n%s\nstderr:\n%s", first.Code, first.Stdout, first.Stderr)
		}
		want := "2 migrations found (node-pg-migrate), 2 applied by this run: 1700000000000_create-products, 1700000000001_add-price"
		if !strings.Contains(first.Stderr, want) {
			t.Fatalf("want %q in:\n%s", want, first.Stderr)
		}
		second := env.Run(t, ns, npm...)
		if second.Code != 0 || !strings.Contains(second.Stderr, "none applied by this run") {
			t.Fatalf("second node-pg-migrate run: exit %d\n%s", second.Code, second.Stderr)
		}
		// The migrations really ran: the table exists with the new column.
		check := env.Run(t, ns, "db", "run", "nodeapp", "--", "psql", "-Atc", "select column_name from information_schema.columns where table_name='products' order by 1")
		if check.Code != 0 || !strings.Contains(check.Stdout, "price_cents") {
			t.Fatalf("products.price_cents is missing: exit %d\n%s\n%s", check.Code, check.Stdout, check.Stderr)
		}
	})
}

func TestE2EMigrateExitCodes(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	createDB(t, env, ns, "app")

	if r := env.Run(t, ns, "db", "migrate", "app", "--", "sh", "-c", "exit 7"); r.Code != 7 {
		t.Errorf("sh -c 'exit 7': exit %d, want 7\n%s", r.Code, r.Stderr)
	}
	r := env.Run(t, ns, "db", "migrate", "app", "--", "no-such-migration-tool", "up")
	if r.Code != 127 || !strings.Contains(r.Stderr, "cannot run no-such-migration-tool") {
		t.Errorf("missing command: exit %d, want 127 and a clear message\n%s", r.Code, r.Stderr)
	}
	r = env.Run(t, ns, "db", "migrate", "nosuchdb", "--", "true")
	if r.Code != 3 || !strings.Contains(r.Stderr, "nosuchdb") {
		t.Errorf("unknown database: exit %d, want 3\n%s", r.Code, r.Stderr)
	}
	if strings.Contains(r.Stderr, "Tunnel open") || strings.Contains(r.Stderr, "lock acquired") {
		t.Errorf("an unknown database got as far as a tunnel or a lock:\n%s", r.Stderr)
	}
	if r := env.Run(t, ns, "db", "migrate", "app"); r.Code != 2 {
		t.Errorf("no command after --: exit %d, want 2", r.Code)
	}
}

var tunnelLine = regexp.MustCompile(`Tunnel open on (127\.0\.0\.1:\d+)`)

// start runs the binary in the background and returns its stderr as lines on a channel.
func start(t *testing.T, env *testbed.Env, ns string, args ...string) (*exec.Cmd, <-chan string, *strings.Builder) {
	t.Helper()
	cmd := env.Command(t, ns, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	all := &strings.Builder{}
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			all.WriteString(sc.Text() + "\n")
			mu.Unlock()
			lines <- sc.Text()
		}
		close(lines)
	}()
	return cmd, lines, all
}

func waitLine(t *testing.T, lines <-chan string, substr string) string {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the tool ended before printing %q", substr)
			}
			if strings.Contains(l, substr) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line with %q within 2 minutes", substr)
		}
	}
}

func readTime(t *testing.T, path string) time.Time {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(0, ns)
}

func TestE2EMigrateLock(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	createDB(t, env, ns, "app")
	dir := t.TempDir()

	t.Run("two concurrent runs do not overlap", func(t *testing.T) {
		script := func(tag string) []string {
			return []string{"db", "migrate", "app", "--", "sh", "-c",
				fmt.Sprintf("date +%%s%%N > %s/%s.start; sleep 2; date +%%s%%N > %s/%s.end", dir, tag, dir, tag)}
		}
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i, tag := range []string{"a", "b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i] = env.Run(t, ns, script(tag)...).Code
			}()
		}
		wg.Wait()
		if codes[0] != 0 || codes[1] != 0 {
			t.Fatalf("exit codes %v", codes)
		}
		aStart, aEnd := readTime(t, dir+"/a.start"), readTime(t, dir+"/a.end")
		bStart, bEnd := readTime(t, dir+"/b.start"), readTime(t, dir+"/b.end")
		if aStart.Before(bEnd) && bStart.Before(aEnd) {
			t.Fatalf("the runs overlapped: a %s..%s, b %s..%s", aStart.Format(time.StampMicro), aEnd.Format(time.StampMicro),
				bStart.Format(time.StampMicro), bEnd.Format(time.StampMicro))
		}
	})

	t.Run("--no-wait fails fast while the lock is held", func(t *testing.T) {
		first, lines, _ := start(t, env, ns, "db", "migrate", "app", "--", "sleep", "30")
		t.Cleanup(func() { _ = first.Process.Kill(); _ = first.Wait() })
		waitLine(t, lines, "Migration lock acquired")
		began := time.Now()
		r := env.Run(t, ns, "db", "migrate", "app", "--no-wait", "--", "true")
		if r.Code != 8 {
			t.Fatalf("--no-wait while held: exit %d, want 8\n%s", r.Code, r.Stderr)
		}
		if !strings.Contains(r.Stderr, "holds the lock") || !strings.Contains(r.Stderr, "pid") {
			t.Fatalf("the message does not say who holds the lock:\n%s", r.Stderr)
		}
		if took := time.Since(began); took > 15*time.Second {
			t.Fatalf("--no-wait took %s", took)
		}
		_ = first.Process.Signal(syscall.SIGTERM)
		_ = first.Wait()
	})

	t.Run("a killed holder's lease expires and the next run gets the lock", func(t *testing.T) {
		first, lines, _ := start(t, env, ns, "db", "migrate", "app", "--lease-duration", "4s", "--", "sleep", "60")
		waitLine(t, lines, "Migration lock acquired")
		killed := time.Now()
		if err := first.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = first.Wait()
		// Its child (sleep 60) outlives it as an orphan: that is what a crash looks like.
		r := env.Run(t, ns, "db", "migrate", "app", "--lock-timeout", "1m", "--", "true")
		if r.Code != 0 {
			t.Fatalf("second run after kill -9: exit %d\n%s", r.Code, r.Stderr)
		}
		if !strings.Contains(r.Stderr, "Waiting up to") {
			t.Fatalf("the second run did not wait for the dead holder's lease:\n%s", r.Stderr)
		}
		if waited := time.Since(killed); waited < 2*time.Second {
			t.Fatalf("the lock was free after %s: the killed run's lease did not hold", waited)
		}
		ctx := testbed.Context(t, 10*time.Second)
		if _, err := env.Client.CoordinationV1().Leases(ns).Get(ctx, database.LockName("app", "migrate"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("after a clean run the lease should be released (deleted), got %v", err)
		}
	})
}

func TestE2EMigrateForwardsSIGINT(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	createDB(t, env, ns, "app")
	got := filepath.Join(t.TempDir(), "got-int")
	cmd, lines, all := start(t, env, ns, "db", "migrate", "app", "--", "sh", "-c",
		fmt.Sprintf(`trap 'echo int > %s; exit 130' INT; echo ready >&2; while :; do sleep 0.1; done`, got))
	addr := tunnelLine.FindStringSubmatch(waitLine(t, lines, "Tunnel open on"))[1]
	waitLine(t, lines, "ready")
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 130 {
		t.Fatalf("exit %d after SIGINT, want 130 (the command's own code)\n%s", code, all.String())
	}
	if b, err := os.ReadFile(got); err != nil || strings.TrimSpace(string(b)) != "int" {
		t.Fatalf("the command did not get SIGINT: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("the tunnel %s still listens after the tool exited", addr)
	}
}

func TestE2EMigrateKeepsThePasswordOutOfArgvAndOutput(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	createDB(t, env, ns, "app")
	ctx := testbed.Context(t, 10*time.Second)
	secret, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "app-credentials", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	password := string(secret.Data["password"])
	if len(password) < 32 {
		t.Fatalf("implausible password %q", password)
	}
	r := env.Run(t, ns, "-v", "db", "migrate", "app", "--", "sh", "-c",
		`tr '\0' ' ' < /proc/$$/cmdline; echo; test -n "$PGPASSWORD" && echo password-in-env; psql -Atc 'select current_user'`)
	if r.Code != 0 {
		t.Fatalf("exit %d\n%s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "password-in-env") || !strings.Contains(r.Stdout, "app") {
		t.Fatalf("the command did not get the password in its environment, or could not log in:\n%s", r.Stdout)
	}
	if strings.Contains(r.Stdout, password) {
		t.Fatalf("the password is in the command's argv:\n%s", r.Stdout)
	}
	if strings.Contains(r.Stderr, password) {
		t.Fatalf("the password is in the tool's output:\n%s", r.Stderr)
	}
	jr := env.Run(t, ns, "-o", "json", "db", "migrate", "app", "--", "true")
	if strings.Contains(jr.Stdout+jr.Stderr, password) {
		t.Fatal("the password is in the JSON output")
	}
}
