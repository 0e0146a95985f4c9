package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/portforward"

	"github.com/stackblaze/stackblaze/internal/pg"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

func connect(t *testing.T, ctx context.Context, db *testDB, tun *Tunnel) *pgx.Conn {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(cctx, db.connString(tun.Addr()))
	if err != nil {
		t.Fatalf("connect through the tunnel: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func backendPID(t *testing.T, ctx context.Context, conn *pgx.Conn) int {
	t.Helper()
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatalf("query through the tunnel: %v", err)
	}
	return pid
}

func TestE2EOpenAndLogin(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ctx := testbed.Context(t, 5*time.Minute)
	db := newTestDB(t, ctx, env)

	for _, target := range []Target{{Pod: db.pod()}, {Selector: db.selector()}} {
		tun := db.open(t, ctx, target)
		if !strings.HasPrefix(tun.Addr(), "127.0.0.1:") || tun.Port() == 0 || tun.Addr() != "127.0.0.1:"+strconv.Itoa(tun.Port()) {
			t.Fatalf("Addr %q, Port %d: want 127.0.0.1 and a port", tun.Addr(), tun.Port())
		}
		if err := pg.WaitReady(ctx, db.connString(tun.Addr())); err != nil {
			t.Fatalf("%+v: WaitReady: %v", target, err)
		}
		conn := connect(t, ctx, db, tun)
		var user, database string
		if err := conn.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &database); err != nil {
			t.Fatal(err)
		}
		if user != db.user || database != db.database {
			t.Fatalf("logged in as %s to %s, want %s to %s", user, database, db.user, db.database)
		}
		// Sequential clients reuse pooled upgraded connections: each must still work.
		for i := range 5 {
			c := connect(t, ctx, db, tun)
			backendPID(t, ctx, c)
			if err := c.Close(ctx); err != nil {
				t.Fatalf("client %d: close: %v", i, err)
			}
		}
	}

	// A given local port is used; a port in use is refused with an error that says so.
	first := db.open(t, ctx, Target{Selector: db.selector()})
	cfg := Config{REST: env.REST, Client: env.Client, LocalPort: first.Port()}
	if tun, err := Open(ctx, cfg, Target{Namespace: db.ns, Selector: db.selector(), Port: dbPort}); err == nil {
		_ = tun.Close()
		t.Fatalf("Open on port %d, which is in use: no error", first.Port())
	} else if !strings.Contains(err.Error(), strconv.Itoa(first.Port())) {
		t.Errorf("Open on a port in use: %v: want the port named", err)
	}
	free := freePort(t)
	cfg.LocalPort = free
	tun, err := Open(ctx, cfg, Target{Namespace: db.ns, Selector: db.selector(), Port: dbPort})
	if err != nil {
		t.Fatalf("Open on free port %d: %v", free, err)
	}
	defer tun.Close()
	if tun.Port() != free {
		t.Fatalf("Port() = %d, want %d", tun.Port(), free)
	}
	backendPID(t, ctx, connect(t, ctx, db, tun))
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestE2EOpenFailsWithoutPod(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ctx := testbed.Context(t, time.Minute)
	ns := env.Namespace(t, nil)
	for _, target := range []Target{{Namespace: ns, Selector: "app=nothing", Port: dbPort}, {Namespace: ns, Pod: "nothing-0", Port: dbPort}} {
		tun, err := Open(ctx, Config{REST: env.REST, Client: env.Client}, target)
		if err == nil {
			_ = tun.Close()
			t.Fatalf("Open %+v: no error without a pod", target)
		}
		if !strings.Contains(err.Error(), "nothing") || !strings.Contains(err.Error(), ns) {
			t.Errorf("Open %+v: %v: want the selector or pod and the namespace named", target, err)
		}
	}
}

// TestE2EResetOneConnection: a client that resets its socket mid-query (a killed psql, a TLS
// client closing abruptly) must not disturb another client or the tunnel (kubectl#1169).
func TestE2EResetOneConnection(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ctx := testbed.Context(t, 5*time.Minute)
	db := newTestDB(t, ctx, env)
	tun := db.open(t, ctx, Target{Selector: db.selector()})
	if err := pg.WaitReady(ctx, db.connString(tun.Addr())); err != nil {
		t.Fatal(err)
	}

	a := connect(t, ctx, db, tun)
	pidA := backendPID(t, ctx, a)
	b := connect(t, ctx, db, tun)
	pidB := backendPID(t, ctx, b)
	queryDone := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, "SELECT pg_sleep(20)")
		queryDone <- err
	}()
	waitFor(t, ctx, "the sleep to start", func() bool {
		var n int
		err := a.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'SELECT pg_sleep%' AND state = 'active'", pidB).Scan(&n)
		return err == nil && n == 1
	})

	raw, ok := b.PgConn().Conn().(*net.TCPConn)
	if !ok {
		t.Fatalf("client socket is a %T, want *net.TCPConn", b.PgConn().Conn())
	}
	if err := raw.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	_ = raw.Close() // RST, not FIN
	select {
	case err := <-queryDone:
		if err == nil {
			t.Fatal("the query on the reset connection succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the query on the reset connection did not end")
	}

	// A few more rude clients: reset before sending anything, and in the middle of the startup.
	for i := range 6 {
		c, err := net.Dial("tcp", tun.Addr())
		if err != nil {
			t.Fatalf("rude client %d: %v", i, err)
		}
		if i%2 == 1 {
			// The start of a startup packet, cut short.
			_, _ = c.Write([]byte{0, 0, 0, 80, 0, 3, 0, 0})
		}
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
	}

	// The other client still has its session, on the same backend.
	for range 10 {
		if got := backendPID(t, ctx, a); got != pidA {
			t.Fatalf("client A now on backend %d, was %d", got, pidA)
		}
	}
	// And the tunnel takes new clients.
	for range 3 {
		c := connect(t, ctx, db, tun)
		backendPID(t, ctx, c)
		_ = c.Close(ctx)
	}
	if got := backendPID(t, ctx, a); got != pidA {
		t.Fatalf("client A now on backend %d, was %d", got, pidA)
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// TestE2EPodReplaced: a long-lived tunnel (db proxy) survives its pod being deleted and
// recreated by the StatefulSet (kubectl#686).
func TestE2EPodReplaced(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ctx := testbed.Context(t, 8*time.Minute)
	db := newTestDB(t, ctx, env)
	tun := db.open(t, ctx, Target{Selector: db.selector()})
	if err := pg.WaitReady(ctx, db.connString(tun.Addr())); err != nil {
		t.Fatal(err)
	}
	a := connect(t, ctx, db, tun)
	if _, err := a.Exec(ctx, "CREATE TABLE survives (v text); INSERT INTO survives VALUES ('before')"); err != nil {
		t.Fatal(err)
	}
	inflight := connect(t, ctx, db, tun)
	queryDone := make(chan error, 1)
	go func() {
		_, err := inflight.Exec(ctx, "SELECT pg_sleep(600)")
		queryDone <- err
	}()
	time.Sleep(200 * time.Millisecond) // let the query reach the server; nothing depends on it

	old, err := env.Client.CoreV1().Pods(db.ns).Get(ctx, db.pod(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.CoreV1().Pods(db.ns).Delete(ctx, db.pod(), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The in-flight query fails, promptly, with an error rather than a hang.
	select {
	case err := <-queryDone:
		if err == nil {
			t.Fatal("the in-flight query succeeded across the pod's deletion")
		}
		t.Logf("in-flight query: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the in-flight query did not end after its pod was deleted")
	}
	waitPodGone(t, ctx, env.Client, db.ns, db.pod(), old.UID)

	// A client that connects while no pod is ready waits for the new pod, then gets in.
	early := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		c, err := pgx.Connect(cctx, db.connString(tun.Addr()))
		if err == nil {
			var v string
			err = c.QueryRow(cctx, "SELECT v FROM survives").Scan(&v)
			_ = c.Close(cctx)
		}
		early <- err
	}()

	fresh := waitPodReady(t, ctx, env.Client, db.ns, db.pod(), old.UID)
	t.Logf("pod replaced: uid %s -> %s", old.UID, fresh.UID)
	c := connect(t, ctx, db, tun)
	var v string
	if err := c.QueryRow(ctx, "SELECT v FROM survives").Scan(&v); err != nil || v != "before" {
		t.Fatalf("after the pod was replaced: %q, %v: want the row written before", v, err)
	}
	if err := <-early; err != nil {
		t.Fatalf("client that connected while the pod was down: %v", err)
	}
	// The old connection is gone for good, and says so.
	if _, err := a.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a connection to the deleted pod still answers")
	}
}

// TestE2ECopy1GiB: large transfers do not stall (kubernetes#74551): 1 GiB in with COPY FROM
// STDIN, 1 GiB out with COPY TO STDOUT.
func TestE2ECopy1GiB(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ctx := testbed.Context(t, 20*time.Minute)
	db := newTestDB(t, ctx, env)
	tun := db.open(t, ctx, Target{Selector: db.selector()})
	if err := pg.WaitReady(ctx, db.connString(tun.Addr())); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, ctx, db, tun)
	if _, err := conn.Exec(ctx, "CREATE UNLOGGED TABLE big (id bigint, payload text)"); err != nil {
		t.Fatal(err)
	}

	const total = 1 << 30
	src := &rowGen{limit: total, payload: strings.Repeat("x", 1000)}
	start := time.Now()
	res, err := conn.PgConn().CopyFrom(ctx, src, "COPY big FROM STDIN")
	if err != nil {
		t.Fatalf("COPY FROM STDIN after %d bytes: %v", src.sent, err)
	}
	elapsed := time.Since(start)
	t.Logf("COPY FROM: %d rows, %d bytes in %v (%.1f MiB/s)", src.rows, src.sent, elapsed, float64(src.sent)/elapsed.Seconds()/(1<<20))
	if res.RowsAffected() != src.rows || src.sent < total {
		t.Fatalf("COPY FROM: %d rows affected, %d generated, %d bytes sent", res.RowsAffected(), src.rows, src.sent)
	}
	var rows, payload int64
	if err := conn.QueryRow(ctx, "SELECT count(*), coalesce(sum(octet_length(payload)), 0) FROM big").Scan(&rows, &payload); err != nil {
		t.Fatal(err)
	}
	if rows != src.rows || payload != src.rows*1000 {
		t.Fatalf("table holds %d rows, %d payload bytes; want %d, %d", rows, payload, src.rows, src.rows*1000)
	}
	if _, err := conn.Exec(ctx, "DROP TABLE big"); err != nil {
		t.Fatal(err)
	}

	// And the other way: 1 GiB generated by the server.
	const outRows = 1 << 20
	var sink countingWriter
	start = time.Now()
	if _, err := conn.PgConn().CopyTo(ctx, &sink, fmt.Sprintf("COPY (SELECT repeat('y', 1023) FROM generate_series(1, %d)) TO STDOUT", outRows)); err != nil {
		t.Fatalf("COPY TO STDOUT after %d bytes: %v", sink.n, err)
	}
	elapsed = time.Since(start)
	t.Logf("COPY TO: %d bytes in %v (%.1f MiB/s)", sink.n, elapsed, float64(sink.n)/elapsed.Seconds()/(1<<20))
	if sink.n != outRows*1024 {
		t.Fatalf("COPY TO: %d bytes, want %d", sink.n, outRows*1024)
	}
	backendPID(t, ctx, conn)
}

// rowGen generates "id<TAB>payload<NL>" rows until limit bytes have been produced.
type rowGen struct {
	limit, sent int64
	rows        int64
	payload     string
	pending     []byte
}

func (g *rowGen) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(g.pending) == 0 {
			if g.sent+int64(n) >= g.limit {
				break
			}
			g.rows++
			g.pending = strconv.AppendInt(g.pending[:0], g.rows, 10)
			g.pending = append(g.pending, '\t')
			g.pending = append(g.pending, g.payload...)
			g.pending = append(g.pending, '\n')
		}
		c := copy(p[n:], g.pending)
		g.pending = g.pending[c:]
		n += c
	}
	g.sent += int64(n)
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// TestE2ECloseLeavesNothing: Close ends the clients' connections and the listener, and is
// idempotent.
func TestE2ECloseLeavesNothing(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ctx := testbed.Context(t, 5*time.Minute)
	db := newTestDB(t, ctx, env)
	tun, err := Open(ctx, Config{REST: env.REST, Client: env.Client, Logf: t.Logf}, Target{Namespace: db.ns, Pod: db.pod(), Port: dbPort})
	if err != nil {
		t.Fatal(err)
	}
	addr := tun.Addr()
	if err := pg.WaitReady(ctx, db.connString(addr)); err != nil {
		t.Fatal(err)
	}
	conns := make([]*pgx.Conn, 3)
	for i := range conns {
		conns[i] = connect(t, ctx, db, tun)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := conns[0].Exec(ctx, "SELECT pg_sleep(600)")
		errs <- err
	}()
	time.Sleep(200 * time.Millisecond)

	closed := make(chan error, 1)
	go func() { closed <- tun.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	if err := tun.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		_ = c.Close()
		t.Fatalf("%s still accepts connections after Close", addr)
	}
	wg.Wait()
	if err := <-errs; err == nil {
		t.Fatal("a query in flight through the closed tunnel succeeded")
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := conns[1].Exec(qctx, "SELECT 1"); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an idle connection through the closed tunnel: %v, want it closed", err)
	}
}

// TestE2ETransports: the tunnel works over both transports, SPDY tunnelled over WebSocket and
// the plain SPDY it falls back to, and after a client's half-close the pod's answer still
// reaches it.
func TestE2ETransports(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ctx := testbed.Context(t, 5*time.Minute)
	db := newTestDB(t, ctx, env)
	tun := db.open(t, ctx, Target{Pod: db.pod()})
	if err := pg.WaitReady(ctx, db.connString(tun.Addr())); err != nil {
		t.Fatal(err)
	}
	for _, spdyOnly := range []bool{false, true} {
		if spdyOnly {
			// As after a refused WebSocket upgrade: new upgraded connections are plain SPDY.
			tun.spdyOnly.Store(true)
			for _, p := range idlePools(t, ctx, tun) {
				p.dropIdle()
			}
		}
		c := connect(t, ctx, db, tun)
		backendPID(t, ctx, c)
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
		for _, p := range idlePools(t, ctx, tun) {
			p.mu.Lock()
			for s := range p.all {
				if _, overWebSocket := s.conn.conn.(*portforward.TunnelingConnection); overWebSocket == spdyOnly {
					t.Errorf("spdyOnly=%v: an upgraded connection over WebSocket: %v", spdyOnly, overWebSocket)
				}
			}
			p.mu.Unlock()
		}
	}
	// Last, as the half-closed connection keeps its upgraded connection busy for a while.
	halfClose(t, tun.Addr())
}

// idlePools waits until no client connection is using the tunnel's upgraded connections, and
// none is being opened, and returns the pools.
func idlePools(t *testing.T, ctx context.Context, tun *Tunnel) []*pool {
	t.Helper()
	var pools []*pool
	waitFor(t, ctx, "idle upgraded connections", func() bool {
		tun.mu.Lock()
		defer tun.mu.Unlock()
		pools = pools[:0]
		for _, p := range tun.pools {
			p.mu.Lock()
			busy := p.warming
			for s := range p.all {
				busy = busy || s.active > 0
			}
			p.mu.Unlock()
			if busy {
				return false
			}
			pools = append(pools, p)
		}
		return true
	})
	return pools
}

// halfClose sends PostgreSQL an SSLRequest, half-closes, and expects the one-byte answer. (The
// test bed's kubelet, KWOK, does not pass a half-close on to the pod's server, so the server
// never closes in return: the end of the connection is not waited for.)
func halfClose(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || (b[0] != 'N' && b[0] != 'S') {
		t.Fatalf("after an SSLRequest and a half-close: read %q, %v; want N or S", b, err)
	}
}
