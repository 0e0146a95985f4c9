package tunnel

import (
	"bufio"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stackblaze/stackblaze/internal/testbed"
)

// TestE2EKilledClientReleasesItsSession kills a client (psql, SIGKILL: it closes nothing itself)
// that holds a session advisory lock through the tunnel, the way a migration tool that dies
// holds its migration lock, and takes the same lock from a new session: its server session must
// end within seconds. Once with the killed client's session idle (waiting for its next command,
// as Prisma's engine leaves it), once with it busy in a long statement.
func TestE2EKilledClientReleasesItsSession(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ctx := testbed.Context(t, 5*time.Minute)
	db := newTestDB(t, ctx, env)
	tun := db.open(t, ctx, Target{Pod: db.pod()})

	for i, tc := range []struct{ name, after string }{
		{"idle", ""},
		{"busy", "SELECT pg_sleep(600);\n"},
	} {
		key := 4200 + i
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, "psql", "-X", "-At", db.connString(tun.Addr()))
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			if _, err := io.WriteString(stdin, "SELECT 'locked:' || pg_advisory_lock("+itoa(key)+")::text;\n"); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "locked:") {
				t.Fatalf("psql did not take the lock: %q %v", line, err)
			}
			if tc.after != "" {
				_, _ = io.WriteString(stdin, tc.after)
				time.Sleep(500 * time.Millisecond) // let the statement reach the server
			}
			conn := connect(t, ctx, db, tun)
			var held bool
			if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&held); err != nil || held {
				t.Fatalf("the lock is free while psql holds it (%v, %v)", held, err)
			}
			killed := time.Now()
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			// The new session asks for the lock with a bounded wait; the server grants it the
			// moment the killed client's session ends.
			if _, err := conn.Exec(ctx, "SET lock_timeout = '20s'"); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
				t.Fatalf("the killed client's session still holds the lock after %s: %v", time.Since(killed).Round(time.Second), err)
			}
			t.Logf("lock taken %s after the client was killed", time.Since(killed).Round(10*time.Millisecond))
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
