package rotatecreds_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stackblaze/stackblaze/internal/commands"
	"github.com/stackblaze/stackblaze/internal/commands/db/rotatecreds"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/testbed"
	"github.com/stackblaze/stackblaze/internal/tunnel"
)

type secretCreds struct {
	User, Password, Database, URL string
}

func readSecret(t *testing.T, env *testbed.Env, ns, db string) secretCreds {
	t.Helper()
	s, err := env.Client.CoreV1().Secrets(ns).Get(context.Background(), database.CredentialsSecretName(db), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return secretCreds{User: string(s.Data["username"]), Password: string(s.Data["password"]), Database: string(s.Data["database"]), URL: string(s.Data["DATABASE_URL"])}
}

// agree checks that the Secret's DATABASE_URL carries its username and password.
func (c secretCreds) agree(t *testing.T) {
	t.Helper()
	u, err := url.Parse(c.URL)
	if err != nil {
		t.Fatalf("DATABASE_URL does not parse: %v", err)
	}
	pw, _ := u.User.Password()
	if u.User.Username() != c.User || pw != c.Password || u.Path != "/"+c.Database {
		t.Errorf("DATABASE_URL (user %s, path %s) disagrees with username %s / password / database %s", u.User.Username(), u.Path, c.User, c.Database)
	}
}

// openTunnel is the test's own port-forward to the database pod.
func openTunnel(t *testing.T, env *testbed.Env, ns, db string) int {
	t.Helper()
	tun, err := tunnel.Open(context.Background(), tunnel.Config{REST: env.REST, Client: env.Client},
		tunnel.Target{Namespace: ns, Pod: database.PodName(db), Port: 5432})
	if err != nil {
		t.Fatalf("open a tunnel: %v", err)
	}
	t.Cleanup(func() { _ = tun.Close() })
	return tun.Port()
}

func login(ctx context.Context, port int, user, password, database string) error {
	cfg, err := pgx.ParseConfig("host=127.0.0.1 sslmode=disable connect_timeout=10")
	if err != nil {
		return err
	}
	cfg.Port, cfg.User, cfg.Password, cfg.Database = uint16(port), user, password, database
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "SELECT 1")
	return err
}

func isAuthFailure(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000")
}

func superuser(t *testing.T, env *testbed.Env, ns, db string, port int) *pgx.Conn {
	t.Helper()
	s, err := env.Client.CoreV1().Secrets(ns).Get(context.Background(), database.SuperuserSecretName(db), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := pgx.ParseConfig("host=127.0.0.1 sslmode=disable connect_timeout=10 user=postgres dbname=postgres")
	cfg.Port, cfg.Password = uint16(port), string(s.Data["password"])
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("superuser login: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func setup(t *testing.T, env *testbed.Env, db string) string {
	t.Helper()
	ns := env.Namespace(t, nil)
	if r := env.Run(t, ns, "db", "create", db, "--storage", "1Gi"); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	d := testbed.AppDeployment("web", database.DefaultImageRepository+":17")
	if _, err := env.Client.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := env.Run(t, ns, "db", "attach", db, "--to", "deployment/web"); r.Code != 0 {
		t.Fatalf("attach: exit %d\n%s", r.Code, r.Stderr)
	}
	return ns
}

func templateAnnotations(t *testing.T, env *testbed.Env, ns string) map[string]string {
	t.Helper()
	d, err := env.Client.AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Annotations
}

func TestE2ERotateCredentials(t *testing.T) {
	env := testbed.Require(t)
	ns := setup(t, env, "shop")
	ctx := testbed.Context(t, 8*time.Minute)
	port := openTunnel(t, env, ns, "shop")
	old := readSecret(t, env, ns, "shop")
	beforeTmpl := templateAnnotations(t, env, ns)

	if r := env.Run(t, ns, "db", "rotate-credentials", "shop"); r.Code != 2 || !strings.Contains(r.Stderr, "--yes") {
		t.Errorf("CI without --yes: exit %d, want 2 and a hint\n%s", r.Code, r.Stderr)
	}
	if r := env.Run(t, ns, "db", "rotate-credentials", "shop", "--yes", "--show-password"); r.Code != 2 {
		t.Errorf("--show-password without -o json: exit %d, want 2", r.Code)
	}

	r := env.Run(t, ns, "db", "rotate-credentials", "shop", "--yes")
	if r.Code != 0 {
		t.Fatalf("rotate: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	if strings.Contains(r.Stdout+r.Stderr, old.Password) {
		t.Errorf("the output contains the old password")
	}
	cur := readSecret(t, env, ns, "shop")
	if strings.Contains(r.Stdout+r.Stderr, cur.Password) {
		t.Errorf("the output contains the new password without --show-password")
	}
	if !strings.Contains(r.Stdout, "shop-credentials") || !strings.Contains(r.Stdout, "deployment/web") {
		t.Errorf("the output does not say which Secret and workloads changed:\n%s", r.Stdout)
	}
	cur.agree(t)
	if cur.Password == old.Password || cur.User == old.User {
		t.Fatalf("the Secret did not change role and password: %s → %s", old.User, cur.User)
	}
	if err := login(ctx, port, cur.User, cur.Password, cur.Database); err != nil {
		t.Errorf("the new credentials do not log in: %v", err)
	}
	if err := login(ctx, port, old.User, old.Password, old.Database); !isAuthFailure(err) {
		t.Errorf("the old credentials are not refused: %v", err)
	}
	after := templateAnnotations(t, env, ns)
	if after[database.AnnotationRotated("shop")] == "" || after[database.AnnotationRotated("shop")] == beforeTmpl[database.AnnotationRotated("shop")] {
		t.Errorf("the Deployment's pod template did not change: %v", after)
	}
	if _, err := env.Client.CoreV1().Secrets(ns).Get(ctx, database.RotationSecretName("shop"), metav1.GetOptions{}); err == nil {
		t.Errorf("the rotation record is left behind")
	}

	su := superuser(t, env, ns, "shop", port)
	var verifier string
	if err := su.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", cur.User).Scan(&verifier); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(verifier, "SCRAM-SHA-256$4096:") {
		t.Errorf("the stored password is not our SCRAM verifier: %.20s...", verifier)
	}

	t.Run("both logins act as the same owner", func(t *testing.T) {
		cfg, _ := pgx.ParseConfig("host=127.0.0.1 sslmode=disable")
		cfg.Port, cfg.User, cfg.Password, cfg.Database = uint16(port), cur.User, cur.Password, cur.Database
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE TABLE made_by_b (id int)"); err != nil {
			t.Fatal(err)
		}
		var owner string
		if err := conn.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_b'").Scan(&owner); err != nil {
			t.Fatal(err)
		}
		if owner != database.RoleName("shop") {
			t.Errorf("a table created through %s is owned by %s, want %s", cur.User, owner, database.RoleName("shop"))
		}
	})

	t.Run("a second rotation switches back and keeps access", func(t *testing.T) {
		r := env.Run(t, ns, "db", "rotate-credentials", "shop", "--yes", "-o", "json", "--show-password")
		if r.Code != 0 {
			t.Fatalf("second rotation: exit %d\n%s", r.Code, r.Stderr)
		}
		var res rotatecreds.Result
		if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
			t.Fatalf("JSON: %v\n%s", err, r.Stdout)
		}
		third := readSecret(t, env, ns, "shop")
		third.agree(t)
		if res.Password != third.Password || res.Username != third.User || res.PreviousUsername != cur.User || !res.OldLoginDisabled {
			t.Errorf("result %+v disagrees with the Secret (user %s)", res, third.User)
		}
		if third.User != database.RoleName("shop") {
			t.Errorf("second rotation went to %s, want %s", third.User, database.RoleName("shop"))
		}
		cfg, _ := pgx.ParseConfig("host=127.0.0.1 sslmode=disable")
		cfg.Port, cfg.User, cfg.Password, cfg.Database = uint16(port), third.User, third.Password, third.Database
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "INSERT INTO made_by_b VALUES (1)"); err != nil {
			t.Errorf("the owner login cannot use a table made through the other login: %v", err)
		}
		if err := login(ctx, port, cur.User, cur.Password, cur.Database); !isAuthFailure(err) {
			t.Errorf("the previous credentials are not refused: %v", err)
		}
	})
}

// killAfterEnv makes the test binary, run by runKilledAfter, be the stackblaze command line whose
// rotations kill their own process with SIGKILL right after the step it names.
const killAfterEnv = "TEST_HELPER_ROTATECREDS_KILL_AFTER"

// TestHelperKilledAfterStep is not a test: run by runKilledAfter, it is the stackblaze command line
// whose rotation runs kill their own process after the step named in killAfterEnv.
func TestHelperKilledAfterStep(t *testing.T) {
	testbed.KilledAfterStepMain(t, killAfterEnv, rotatecreds.SetAfterStep, func(ctx context.Context, args []string) int {
		return commands.Main(ctx, output.System(), args)
	})
}

// runKilledAfter runs the command line in a process of its own that is killed after step.
func runKilledAfter(t *testing.T, env *testbed.Env, ns, step string, args ...string) testbed.Result {
	t.Helper()
	return env.RunKilledAfter(t, ns, "TestHelperKilledAfterStep", killAfterEnv, step, args...)
}

func TestE2ERotateCredentialsKilledAtEachStep(t *testing.T) {
	env := testbed.Require(t)
	ns := setup(t, env, "crash")
	ctx := testbed.Context(t, 15*time.Minute)
	port := openTunnel(t, env, ns, "crash")
	for _, step := range rotatecreds.Steps {
		t.Run(step, func(t *testing.T) {
			old := readSecret(t, env, ns, "crash")
			r := runKilledAfter(t, env, ns, step, "db", "rotate-credentials", "crash", "--yes", "--lease-duration", "3s")
			if r.Code != -1 { // killed by SIGKILL
				t.Fatalf("the crash hook did not kill the run after %s: exit %d\n%s", step, r.Code, r.Stderr)
			}
			// Whatever state the kill left, the Secret's credentials log in: an app restarted
			// now would work.
			mid := readSecret(t, env, ns, "crash")
			mid.agree(t)
			if err := login(ctx, port, mid.User, mid.Password, mid.Database); err != nil {
				t.Errorf("after a kill at %s the Secret's credentials do not log in: %v", step, err)
			}
			// And so do the ones running apps may still hold.
			if step != rotatecreds.StepRetired {
				if err := login(ctx, port, old.User, old.Password, old.Database); err != nil {
					t.Errorf("after a kill at %s the credentials from before the rotation do not log in: %v", step, err)
				}
			}
			r = env.Run(t, ns, "db", "rotate-credentials", "crash", "--yes", "-o", "json")
			if r.Code != 0 {
				t.Fatalf("the second run after a kill at %s: exit %d\n%s", step, r.Code, r.Stderr)
			}
			var res rotatecreds.Result
			if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || !res.Resumed {
				t.Errorf("the second run did not resume the rotation (%v): %s", err, r.Stdout)
			}
			cur := readSecret(t, env, ns, "crash")
			cur.agree(t)
			if cur.Password == old.Password {
				t.Errorf("the rotation was not finished: the password is unchanged")
			}
			if err := login(ctx, port, cur.User, cur.Password, cur.Database); err != nil {
				t.Errorf("after the rerun the Secret's credentials do not log in: %v", err)
			}
			if err := login(ctx, port, old.User, old.Password, old.Database); !isAuthFailure(err) {
				t.Errorf("after the rerun the old credentials are not refused: %v", err)
			}
			if _, err := env.Client.CoreV1().Secrets(ns).Get(ctx, database.RotationSecretName("crash"), metav1.GetOptions{}); err == nil {
				t.Errorf("the rotation record is left behind")
			}
		})
	}
}

func TestE2ERotateCredentialsGraceNoFailedLogin(t *testing.T) {
	env := testbed.Require(t)
	ns := setup(t, env, "live")
	ctx := testbed.Context(t, 8*time.Minute)
	port := openTunnel(t, env, ns, "live")
	old := readSecret(t, env, ns, "live")

	var attempts, failures, authFailures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Always what the Secret holds at this moment, as a restarted app would read it.
			s, err := env.Client.CoreV1().Secrets(ns).Get(ctx, database.CredentialsSecretName("live"), metav1.GetOptions{})
			if err != nil {
				continue
			}
			attempts.Add(1)
			if err := login(ctx, port, string(s.Data["username"]), string(s.Data["password"]), string(s.Data["database"])); err != nil {
				failures.Add(1)
				if isAuthFailure(err) {
					authFailures.Add(1)
				}
				firstErr.CompareAndSwap(nil, err.Error())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	r := env.Run(t, ns, "db", "rotate-credentials", "live", "--yes", "--grace", "5s")
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if r.Code != 0 {
		t.Fatalf("rotate: exit %d\n%s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "Grace period") {
		t.Errorf("no grace period in the progress lines:\n%s", r.Stderr)
	}
	t.Logf("%d logins during the rotation, %d failed", attempts.Load(), failures.Load())
	if attempts.Load() < 20 {
		t.Errorf("only %d logins: the client loop did not run through the rotation", attempts.Load())
	}
	if authFailures.Load() != 0 || failures.Load() != 0 {
		t.Errorf("%d logins failed (%d refused); first: %v", failures.Load(), authFailures.Load(), firstErr.Load())
	}
	if err := login(ctx, port, old.User, old.Password, old.Database); !isAuthFailure(err) {
		t.Errorf("after the grace period the old credentials are not refused: %v", err)
	}
	cur := readSecret(t, env, ns, "live")
	if err := login(ctx, port, cur.User, cur.Password, cur.Database); err != nil {
		t.Errorf("the new credentials do not log in: %v", err)
	}
}

func TestE2ERotateCredentialsNoPlaintextInServerLog(t *testing.T) {
	env := testbed.Require(t)
	ns := setup(t, env, "logged")
	ctx := testbed.Context(t, 8*time.Minute)

	// log_statement = 'all' through the container's args (the pod is replaced).
	pod, err := env.Client.CoreV1().Pods(ns).Get(ctx, database.PodName("logged"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	patch := `[{"op":"add","path":"/spec/template/spec/containers/0/args","value":["-c","log_statement=all"]}]`
	if _, err := env.Client.AppsV1().StatefulSets(ns).Patch(ctx, "logged", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitReplaced(t, env, ns, database.PodName("logged"), pod.UID)

	first := readSecret(t, env, ns, "logged")
	for i := 0; i < 2; i++ {
		if r := env.Run(t, ns, "db", "rotate-credentials", "logged", "--yes"); r.Code != 0 {
			t.Fatalf("rotate: exit %d\n%s", r.Code, r.Stderr)
		}
	}
	second := readSecret(t, env, ns, "logged")
	log := serverLog(t, env, ns, database.PodName("logged"))
	if !strings.Contains(log, "ALTER ROLE") || !strings.Contains(log, "SCRAM-SHA-256$4096:") {
		t.Fatalf("the server log has no logged ALTER ROLE with a verifier (is log_statement=all on?):\n%s", tail(log))
	}
	for _, pw := range []string{first.Password, second.Password} {
		if strings.Contains(log, pw) {
			t.Errorf("the server log contains a plaintext password")
		}
	}
}

// serverLog is the PostgreSQL log of the pod's container, read as a user would, through the
// API (kubectl logs): the container before the last restart, if any, then the current one.
func serverLog(t *testing.T, env *testbed.Env, ns, pod string) string {
	t.Helper()
	ctx := testbed.Context(t, 30*time.Second)
	var b strings.Builder
	for _, previous := range []bool{true, false} {
		data, err := env.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: database.ContainerName, Previous: previous}).DoRaw(ctx)
		if err != nil {
			if previous {
				continue // no restart: there is no previous container
			}
			t.Fatalf("logs of %s/%s: %v", ns, pod, err)
		}
		b.Write(data)
	}
	return b.String()
}

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}

// waitReplaced waits until the pod of that name is a new one (another UID) and Ready.
func waitReplaced(t *testing.T, env *testbed.Env, ns, name string, uid types.UID) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		p, err := env.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && p.UID != uid && kube.PodReady(p) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("pod %s was not replaced and Ready within 3 minutes", name)
}

func TestE2ERotateCredentialsLock(t *testing.T) {
	env := testbed.Require(t)
	ns := setup(t, env, "locked")
	ctx := testbed.Context(t, 5*time.Minute)
	first := env.Command(t, ns, "db", "rotate-credentials", "locked", "--yes", "--grace", "15s")
	var stderr bytes.Buffer
	first.Stderr = &stderr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the first run holds the lease.
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := env.Client.CoordinationV1().Leases(ns).Get(ctx, database.LockName("locked", "rotate"), metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first rotation never took the lock:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := env.Run(t, ns, "db", "rotate-credentials", "locked", "--yes", "--lock-timeout", "1s")
	if r.Code != 8 || !strings.Contains(r.Stderr, "another rotation of locked is running") {
		t.Errorf("second rotation while the first runs: exit %d, want 8\n%s", r.Code, r.Stderr)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("the first rotation failed: %v\n%s", err, stderr.String())
	}
	cur := readSecret(t, env, ns, "locked")
	port := openTunnel(t, env, ns, "locked")
	if err := login(ctx, port, cur.User, cur.Password, cur.Database); err != nil {
		t.Errorf("the Secret's credentials do not log in after the locked-out attempt: %v", err)
	}
}
