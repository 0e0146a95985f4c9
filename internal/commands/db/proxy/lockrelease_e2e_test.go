package proxy_test

import (
	"bufio"
	"context"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stackblaze/stackblaze/internal/testbed"
)

// TestE2EKilledClientReleasesItsSession kills a client (psql, with SIGKILL: it closes nothing
// itself) that holds a session advisory lock through `db proxy`, the way a migration tool that
// dies holds its migration lock (Prisma's P1002), and takes the same lock from a new session
// through the same tunnel: the killed client's server session must end within seconds. Once
// with that session idle (waiting for its next command), once busy in a long statement.
func TestE2EKilledClientReleasesItsSession(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	if r := env.Run(t, ns, "db", "create", "locks", "--timeout", "3m"); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	ctx := testbed.Context(t, 4*time.Minute)
	proxy := startProxy(t, env, ns, "locks")
	u, password := proxy.url, proxy.password
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	u.User = url.User(u.User.Username())
	noPassword := u.String()
	u.User = url.UserPassword(u.User.Username(), password)
	dsn := u.String()

	for i, tc := range []struct{ name, after string }{
		{"idle", ""},
		{"busy", "SELECT pg_sleep(600);\n"},
	} {
		key := strconv.Itoa(4200 + i)
		t.Run(tc.name, func(t *testing.T) {
			// The password reaches psql through its environment, not its argv.
			cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-d", noPassword)
			cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
			stdin, _ := cmd.StdinPipe()
			out, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			_, _ = io.WriteString(stdin, "SELECT 'locked:' || pg_advisory_lock("+key+")::text;\n")
			got, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || !strings.HasPrefix(got, "locked:") {
				t.Fatalf("psql did not take the lock: %q %v\n%s", got, err, stderr.String())
			}
			if tc.after != "" {
				_, _ = io.WriteString(stdin, tc.after)
			}
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			if tc.after != "" {
				// The long statement has reached the server: its session is active.
				deadline := time.Now().Add(30 * time.Second)
				for {
					var n int
					if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%' AND state = 'active'").Scan(&n); err != nil {
						t.Fatal(err)
					}
					if n == 1 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the long statement never started")
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			var free bool
			if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock("+key+")").Scan(&free); err != nil || free {
				t.Fatalf("the lock is free while psql holds it (%v, %v)", free, err)
			}
			killed := time.Now()
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			// The new session asks for the lock with a bounded wait; the server grants it the
			// moment the killed client's session ends.
			if _, err := conn.Exec(ctx, "SET lock_timeout = '15s'"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock("+key+")"); err != nil {
				t.Fatalf("the killed client's session still holds the lock after %s: %v", time.Since(killed).Round(time.Second), err)
			}
			t.Logf("lock taken %s after the client was killed", time.Since(killed).Round(10*time.Millisecond))
		})
	}
}
