package tunnel

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stackblaze/stackblaze/internal/pg"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// BenchmarkE2ETunnelSelect measures the tunnel's CPU per transaction the way
// hack/bench/tunnel.sh does, but in this process, so that it can be profiled: pgbench -S with 8
// clients through a tunnel for PGBENCH_SECONDS (10 by default), and the CPU this process spent
// per 10,000 transactions. pgbench runs as a child, whose CPU is not counted. Run it alone:
//
//	go test ./internal/tunnel -run '^$' -bench E2ETunnelSelect -benchtime 1x -cpuprofile cpu.out
func BenchmarkE2ETunnelSelect(b *testing.B) {
	env := testbed.Require(b)
	ctx := testbed.Context(b, 10*time.Minute)
	db := newTestDB(b, ctx, env)
	tun := db.open(b, ctx, Target{Selector: db.selector()})
	if err := pg.WaitReady(ctx, db.connString(tun.Addr())); err != nil {
		b.Fatal(err)
	}
	secs := os.Getenv("PGBENCH_SECONDS")
	if secs == "" {
		secs = "10"
	}
	pgbench := func(args ...string) string {
		args = append(args, "-h", "127.0.0.1", "-p", strconv.Itoa(tun.Port()), "-U", db.user, db.database)
		cmd := exec.CommandContext(ctx, "pgbench", args...)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+db.password, "PGSSLMODE=disable")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("pgbench %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	pgbench("-q", "-i", "-s", "1")
	txns := regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	tps := regexp.MustCompile(`tps = ([0-9.]+)`)

	b.ResetTimer()
	for range b.N {
		cpu0 := cpuTime(b)
		out := pgbench("-n", "-S", "-c", "8", "-j", "2", "-T", secs)
		cpu := cpuTime(b) - cpu0
		n, t := txns.FindStringSubmatch(out), tps.FindStringSubmatch(out)
		if n == nil || t == nil {
			b.Fatalf("pgbench output:\n%s", out)
		}
		count, _ := strconv.Atoi(n[1])
		rate, _ := strconv.ParseFloat(t[1], 64)
		b.ReportMetric(rate, "tps")
		b.ReportMetric(float64(cpu.Milliseconds())/float64(count)*10000, "cpu-ms/10k-txns")
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
