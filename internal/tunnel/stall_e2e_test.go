package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stackblaze/stackblaze/internal/pg"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// TestE2EClientNotReadingDoesNotStallOthers: through one tunnel whose clients outnumber its
// upgraded connections (here one upgraded connection carries them all), a client that stops
// reading in the middle of a large result does not slow the others' queries. Their latency
// over many small queries is measured unloaded, then once the client has stopped reading and
// the pod's data for it backs up in the tunnel, then unloaded again (the machine is shared:
// the loaded run is compared with the slower of the two unloaded runs). Every query must
// return (before, none did: the upgraded connection's read loop waited for the client that
// does not read), and the median must stay within 2× of the unloaded one, plus 2 ms. The 2 ms
// are for scale: a query takes about a millisecond here, and one time slice lost to another
// process on this two-core machine is a millisecond or two.
//
// The p90 is logged, not bound: after the tunnel resets the stalled client's stream, the data
// the kubelet and the API server already had on the way for it (tens of MiB, measured) still
// comes down the shared connection and is dropped, for up to a second, and the other clients'
// answers queue behind it in the connection's TCP stream; that tail moves with the machine's
// load, from one run to the next, more than 2× + 2 ms.
func TestE2EClientNotReadingDoesNotStallOthers(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ctx := testbed.Context(t, 10*time.Minute)
	db := newTestDB(t, ctx, env)
	tun, err := Open(ctx, Config{REST: env.REST, Client: env.Client, Logf: t.Logf, maxSessions: 1},
		Target{Namespace: db.ns, Selector: db.selector(), Port: dbPort})
	if err != nil {
		t.Fatalf("open tunnel: %v", err)
	}
	t.Cleanup(func() {
		if err := tun.Close(); err != nil {
			t.Errorf("close tunnel: %v", err)
		}
	})
	if err := pg.WaitReady(ctx, db.connString(tun.Addr())); err != nil {
		t.Fatal(err)
	}

	const clients, queries = 4, 300
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = connect(t, ctx, db, tun)
		backendPID(t, ctx, conns[i])
	}
	sc, err := pgconn.Connect(ctx, db.connString(tun.Addr()))
	if err != nil {
		t.Fatalf("connect the client that will stop reading: %v", err)
	}
	if err := sc.SyncConn(ctx); err != nil {
		t.Fatal(err)
	}
	hijacked, err := sc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	stalled := hijacked.Conn
	defer stalled.Close()

	// Every client is on the one upgraded connection (the readiness check's connection may
	// still be on its way out).
	waitFor(t, ctx, "all clients on one upgraded connection", func() bool {
		n, active := sessionLoad(tun)
		return n == 1 && active == clients+1
	})

	measure := func(what string) (p50, p90 time.Duration) {
		t.Helper()
		var mu sync.Mutex
		var all []time.Duration
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lat := make([]time.Duration, 0, queries)
				for range queries {
					qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
					start := time.Now()
					var one int
					err := c.QueryRow(qctx, "SELECT 1").Scan(&one)
					cancel()
					if err != nil {
						errs <- err
						return
					}
					lat = append(lat, time.Since(start))
				}
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("%s: a query failed: %v", what, err)
		}
		slices.Sort(all)
		p50, p90 = all[len(all)/2], all[len(all)*9/10]
		t.Logf("%s: %d queries, median %v, p90 %v, max %v", what, len(all), p50, p90, all[len(all)-1])
		return p50, p90
	}
	for _, c := range conns { // warm up (statement cache, connections)
		for range 20 {
			backendPID(t, ctx, c)
		}
	}
	base50, base90 := measure("unloaded")

	// The client asks for about 2 GB and reads none of it.
	query := "SELECT repeat('x', 1000) FROM generate_series(1, 2000000)\x00"
	msg := binary.BigEndian.AppendUint32([]byte{'Q'}, uint32(4+len(query)))
	if _, err := stalled.Write(append(msg, query...)); err != nil {
		t.Fatal(err)
	}
	// The client's socket is full and the tunnel is holding data for it (or has already given
	// up on it): the point where, before, the upgraded connection's read loop stopped.
	waitFor(t, ctx, "the pod's data to back up in front of the client", func() bool {
		return tun.notReading.Load() > 0 || backlogged(tun) > 0
	})
	load50, load90 := measure("one client not reading")

	after50, after90 := measure("unloaded, after")
	base50, base90 = max(base50, after50), max(base90, after90)
	const floor = 2 * time.Millisecond
	if load50 > 2*base50+floor {
		t.Errorf("with one client not reading: median %v (p90 %v); unloaded %v (p90 %v): want at most 2× + %v", load50, load90, base50, base90, floor)
	}

	// The tunnel ended the client that stopped reading (it logged why), not the others.
	waitFor(t, ctx, "the client that stopped reading to be let go", func() bool { return tun.notReading.Load() == 1 })
	_ = stalled.SetReadDeadline(time.Now().Add(time.Minute))
	n, err := io.Copy(io.Discard, stalled)
	if err != nil && !errors.Is(err, net.ErrClosed) && !isConnReset(err) {
		t.Fatalf("the client that stopped reading: read %d bytes, then %v; want its connection closed", n, err)
	}
	t.Logf("the client that stopped reading had %d bytes of its result (of about 2 GB) when its connection was closed", n)
	for _, c := range conns {
		backendPID(t, ctx, c)
	}
}

// sessionLoad is how many upgraded connections the tunnel has that take new clients, and how
// many client connections they carry.
func sessionLoad(tun *Tunnel) (sessions, active int) {
	tun.mu.Lock()
	defer tun.mu.Unlock()
	for _, p := range tun.pools {
		p.mu.Lock()
		for s := range p.all {
			if !s.broken {
				sessions++
				active += s.active
			}
		}
		p.mu.Unlock()
	}
	return sessions, active
}

// backlogged is how many streams of the tunnel have data waiting for their client.
func backlogged(tun *Tunnel) int {
	tun.mu.Lock()
	defer tun.mu.Unlock()
	n := 0
	for _, p := range tun.pools {
		p.mu.Lock()
		for s := range p.all {
			n += int(s.conn.backlogged.Load())
		}
		p.mu.Unlock()
	}
	return n
}

func isConnReset(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se) && se.Err.Error() == "connection reset by peer"
}
