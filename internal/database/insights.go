package database

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	bk "github.com/stackblaze/stackblaze/internal/backup"
	"github.com/stackblaze/stackblaze/internal/kube"
)

// Statuses of an insight check, from good to bad.
const (
	CheckOK   = "ok"
	CheckWarn = "warn"
	CheckBad  = "bad"
)

// StatusRank orders check statuses: ok 0, warn 1, bad 2 (-1 for anything else).
func StatusRank(s string) int {
	switch s {
	case CheckOK:
		return 0
	case CheckWarn:
		return 1
	case CheckBad:
		return 2
	}
	return -1
}

// Insight thresholds (docs/commands.md, db insights).
const (
	// DefaultLong is how long a query, a transaction or an idle transaction may last before it
	// is reported (--long); LongBadFactor times that is bad.
	DefaultLong   = 5 * time.Minute
	LongBadFactor = 12
	// Connections: warn and bad at these percentages of what the application may open.
	ConnWarnPercent = 80
	ConnBadPercent  = 95
	// Hit ratios: warn under HitWarn, bad under HitBad, once MinHitBlocks blocks were read.
	HitWarn      = 0.99
	HitBad       = 0.90
	MinHitBlocks = 100000
	// Bloat: a table with more than BloatMinDead dead rows that are more than BloatRatio of it.
	BloatMinDead = 10000
	BloatRatio   = 0.2
	// Top queries: one statement taking TopShare of the time spent by the application's
	// statements, once they took TopMinMs in all.
	TopShare = 0.5
	TopMinMs = 1000
	// Disk: the data or backup volume at these percentages.
	DiskWarnPercent = WarnPercent
	DiskBadPercent  = 95
	// Transaction ID age: warn and bad (wraparound stops writes at about 2.1 billion).
	XIDWarn = 1_000_000_000
	XIDBad  = 1_600_000_000
	// Vacuum: a big table with more than VacuumMinChanged rows changed since its last analyze,
	// more than VacuumRatio of it.
	VacuumMinChanged = 50000
	VacuumRatio      = 0.2
	// Backups: the last one older than BackupWarnAge misses the daily promise; BackupBadAge is
	// two missed.
	BackupWarnAge = 25 * time.Hour
	BackupBadAge  = 49 * time.Hour
)

// Check is one insight: its status, the value it looked at, and what to do.
type Check struct {
	Name    string   `json:"name"`
	Title   string   `json:"title"`
	Status  string   `json:"status"`
	Value   string   `json:"value"`
	Advice  string   `json:"advice,omitempty"`
	Details []string `json:"details,omitempty"`
}

// Insights is db insights' report.
type Insights struct {
	Database string    `json:"database"`
	Time     time.Time `json:"time"`
	// Status is the worst status of the checks.
	Status string  `json:"status"`
	Checks []Check `json:"checks"`
}

// InsightsOptions say how ReadInsights judges.
type InsightsOptions struct {
	// Long is how long a query or transaction may run (0: DefaultLong).
	Long time.Duration
	// Now is the clock the backups' age is measured with (nil: time.Now).
	Now func() time.Time
}

// activity is a client session as pg_stat_activity says.
type activity struct {
	PID       int      `json:"pid"`
	User      string   `json:"user"`
	DB        string   `json:"db"`
	State     string   `json:"state"`
	Query     string   `json:"query"`
	QuerySecs *float64 `json:"query_secs"`
	XactSecs  *float64 `json:"xact_secs"`
	StateSecs *float64 `json:"state_secs"`
	BlockedBy []int    `json:"blocked_by"`
}

// insightsData is what the report's query returns (insightsSQL).
type insightsData struct {
	MaxConnections int        `json:"max_connections"`
	Reserved       int        `json:"reserved"`
	Connections    int        `json:"connections"`
	Activity       []activity `json:"activity"`
	Cache          struct {
		Hit  int64 `json:"hit"`
		Read int64 `json:"read"`
	} `json:"cache"`
	Index struct {
		Hit  int64 `json:"hit"`
		Read int64 `json:"read"`
	} `json:"index"`
	Unused []struct {
		Index string `json:"index"`
		Table string `json:"table"`
		Bytes int64  `json:"bytes"`
	} `json:"unused"`
	Duplicates []struct {
		Indexes []string `json:"indexes"`
		Table   string   `json:"table"`
	} `json:"duplicates"`
	Bloat []struct {
		Table string `json:"table"`
		Live  int64  `json:"live"`
		Dead  int64  `json:"dead"`
	} `json:"bloat"`
	Archiver struct {
		Archived         int64      `json:"archived_count"`
		LastArchivedWAL  string     `json:"last_archived_wal"`
		LastArchivedTime *time.Time `json:"last_archived_time"`
		Failed           int64      `json:"failed_count"`
		LastFailedWAL    string     `json:"last_failed_wal"`
		LastFailedTime   *time.Time `json:"last_failed_time"`
	} `json:"archiver"`
	ArchiveMode string `json:"archive_mode"`
	XIDAge      int64  `json:"xid_age"`
	Tables      []struct {
		Table           string     `json:"table"`
		Bytes           int64      `json:"bytes"`
		Live            int64      `json:"live"`
		Dead            int64      `json:"dead"`
		ModSinceAnalyze int64      `json:"mod_since_analyze"`
		LastVacuum      *time.Time `json:"last_vacuum"`
		LastAnalyze     *time.Time `json:"last_analyze"`
	} `json:"tables"`
	Now time.Time `json:"now"`
	// Statements is nil when pg_stat_statements is not installed in the database.
	Statements *struct {
		TotalMs float64 `json:"total_ms"`
		Top     []struct {
			Query   string  `json:"query"`
			Calls   int64   `json:"calls"`
			TotalMs float64 `json:"total_ms"`
			MeanMs  float64 `json:"mean_ms"`
		} `json:"top"`
	} `json:"statements"`
}

// insightsSQL reads everything the report needs in one psql run, as the superuser, in the
// application's database (pg_stat_statements in the postgres database, where it is installed),
// never waiting for a lock (sizes are pg_class's page counts, which the
// last vacuum or analyze wrote: pg_relation_size would wait behind an exclusive lock): a JSON
// document on one line (jsonb's text has no line breaks, json_agg's
// has), then pg_stat_statements' (or null) on the next. It changes nothing.
const insightsSQL = `
select json_build_object(
 'now', now(),
 'max_connections', current_setting('max_connections')::int,
 'reserved', current_setting('superuser_reserved_connections')::int,
 'connections', (select count(*) from pg_stat_activity where backend_type = 'client backend'),
 'activity', (select coalesce(json_agg(json_build_object(
     'pid', pid, 'user', usename, 'db', datname, 'state', state, 'query', left(regexp_replace(query, '\s+', ' ', 'g'), 300),
     'query_secs', extract(epoch from now() - query_start), 'xact_secs', extract(epoch from now() - xact_start),
     'state_secs', extract(epoch from now() - state_change), 'blocked_by', pg_blocking_pids(pid)) order by pid), '[]')
   from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()),
 'cache', (select json_build_object('hit', blks_hit, 'read', blks_read) from pg_stat_database where datname = current_database()),
 'index', (select json_build_object('hit', coalesce(sum(idx_blks_hit), 0), 'read', coalesce(sum(idx_blks_read), 0)) from pg_statio_user_indexes),
 'unused', (select coalesce(json_agg(json_build_object('index', s.schemaname || '.' || s.indexrelname, 'table', s.schemaname || '.' || s.relname,
     'bytes', c.relpages::bigint * current_setting('block_size')::int) order by c.relpages desc), '[]')
   from pg_stat_user_indexes s join pg_index i on i.indexrelid = s.indexrelid join pg_class c on c.oid = s.indexrelid
   where s.idx_scan = 0 and not i.indisunique and not i.indisprimary and not i.indisexclusion),
 'duplicates', (select coalesce(json_agg(json_build_object('indexes', names, 'table', tbl)), '[]') from (
     select array_agg(indexrelid::regclass::text order by indexrelid::regclass::text) names, indrelid::regclass::text tbl
     from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
     where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'
     group by indrelid, indisunique, indkey::text, indclass::text, indoption::text, indcollation::text,
       coalesce(indexprs::text, ''), coalesce(indpred::text, '')
     having count(*) > 1) d),
 'bloat', (select coalesce(json_agg(json_build_object('table', schemaname || '.' || relname, 'live', n_live_tup, 'dead', n_dead_tup) order by n_dead_tup desc), '[]')
   from pg_stat_user_tables where n_dead_tup > ` + "10000" + ` and n_dead_tup > 0.2 * (n_live_tup + n_dead_tup)),
 'archiver', (select row_to_json(a) from pg_stat_archiver a),
 'archive_mode', current_setting('archive_mode'),
 'xid_age', (select max(age(datfrozenxid)) from pg_database where datallowconn),
 'tables', (select coalesce(json_agg(t), '[]') from (
     select s.schemaname || '.' || s.relname as "table", t.pages::bigint * current_setting('block_size')::int bytes, n_live_tup live, n_dead_tup dead,
       n_mod_since_analyze mod_since_analyze, greatest(last_vacuum, last_autovacuum) last_vacuum, greatest(last_analyze, last_autoanalyze) last_analyze
     from pg_stat_user_tables s cross join lateral (select c.relpages + coalesce((select sum(x.relpages) from pg_index i join pg_class x on x.oid = i.indexrelid where i.indrelid = c.oid), 0)
       + coalesce((select x.relpages from pg_class x where x.oid = c.reltoastrelid), 0) pages from pg_class c where c.oid = s.relid) t
     order by t.pages desc limit 5) t),
 'statements', null)::jsonb;
select current_database() as appdb \gset
\c postgres
select exists (select 1 from pg_extension where extname = 'pg_stat_statements')
  and current_setting('shared_preload_libraries') ~ '(^|,)\s*pg_stat_statements\s*(,|$)' as has_pss \gset
\if :has_pss
select json_build_object('total_ms', coalesce(sum(total_exec_time), 0),
  'top', (select coalesce(json_agg(t), '[]') from (
    select left(regexp_replace(query, '\s+', ' ', 'g'), 300) query, calls, total_exec_time total_ms, mean_exec_time mean_ms
    from pg_stat_statements s where s.dbid = (select oid from pg_database where datname = :'appdb')
      and s.userid not in (select oid from pg_roles where rolsuper)
    order by total_exec_time desc limit 5) t))::jsonb
from pg_stat_statements s where s.dbid = (select oid from pg_database where datname = :'appdb')
  and s.userid not in (select oid from pg_roles where rolsuper);
\else
select 'null';
\endif
`

// readInsightsData runs insightsSQL in the database's container.
func readInsightsData(ctx context.Context, c *kube.Client, name string) (*insightsData, error) {
	script := "PGOPTIONS='-c statement_timeout=20s -c lock_timeout=2s' psql -X -q -At -v ON_ERROR_STOP=1 -d \"$0\" -f - <<'SQL'\n" + insightsSQL + "\nSQL"
	out, err := ExecOutput(ctx, c, name, []string{"sh", "-c", script, RoleName(name)})
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		return nil, fmt.Errorf("database %s: the insights query returned %q", name, out)
	}
	d := &insightsData{}
	if err := json.Unmarshal([]byte(lines[0]), d); err != nil {
		return nil, fmt.Errorf("database %s: read the insights query: %w", name, err)
	}
	if last := strings.TrimSpace(lines[len(lines)-1]); last != "null" {
		if err := json.Unmarshal([]byte(last), &d.Statements); err != nil {
			return nil, fmt.Errorf("database %s: read pg_stat_statements: %w", name, err)
		}
	}
	return d, nil
}

// ReadInsights reads database name's health report: PostgreSQL's statistics (one psql run in its
// pod), its disk use, its server log (for the reason of a WAL archiving failure) and its backups.
// It changes nothing. A database whose pod is not ready is a *NotReadyError.
func ReadInsights(ctx context.Context, c *kube.Client, name string, o InsightsOptions) (*Insights, error) {
	now := clockOr(o.Now)
	long := o.Long
	if long <= 0 {
		long = DefaultLong
	}
	sts, err := GetDatabase(ctx, c.Clientset, c.Namespace, name)
	if err != nil {
		return nil, err
	}
	if _, err := readyPod(ctx, c.Clientset, c.Namespace, name); err != nil {
		return nil, err
	}
	d, err := readInsightsData(ctx, c, name)
	if err != nil {
		return nil, err
	}
	disk, _ := ReadDiskUsage(ctx, c, name)
	var reason string
	if d.Archiver.Failed > 0 {
		reason = archiveFailure(ctx, c, name)
	}
	bt := &Backups{Client: c, Name: name, Config: BackupConfig(name)}
	repo, _, berr := bt.Info(ctx)
	created := sts.CreationTimestamp.Time
	r := &Insights{Database: name, Time: now().UTC()}
	r.Checks = []Check{
		checkConnections(d),
		checkLongQueries(d, long),
		checkLongTransactions(d, long),
		checkIdleInTransaction(d, long),
		checkBlocking(d, long),
		checkHit("cache-hit", "Cache hit ratio", "table reads served from memory", d.Cache.Hit, d.Cache.Read),
		checkHit("index-hit", "Index hit ratio", "index reads served from memory", d.Index.Hit, d.Index.Read),
		checkUnusedIndexes(d),
		checkDuplicateIndexes(d),
		checkBloat(d),
		checkTopQueries(d),
		checkDisk(disk),
		checkArchiving(d, reason),
		checkXIDAge(d),
		checkVacuum(d),
		checkBackups(repo, berr, now(), created),
	}
	r.Status = CheckOK
	for i, ch := range r.Checks {
		r.Checks[i].Advice = strings.ReplaceAll(ch.Advice, "{db}", name)
		if StatusRank(ch.Status) > StatusRank(r.Status) {
			r.Status = ch.Status
		}
	}
	return r, nil
}

func secs(p *float64) time.Duration {
	if p == nil {
		return 0
	}
	return time.Duration(*p * float64(time.Second))
}

func short(d time.Duration) string {
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

func session(a activity) string {
	return fmt.Sprintf("pid %d (%s@%s)", a.PID, a.User, a.DB)
}

func checkConnections(d *insightsData) Check {
	c := Check{Name: "connections", Title: "Connections", Status: CheckOK}
	limit := d.MaxConnections - d.Reserved
	pct := 0.0
	if limit > 0 {
		pct = float64(d.Connections) * 100 / float64(limit)
	}
	c.Value = fmt.Sprintf("%d of %d (%.0f%%)", d.Connections, limit, pct)
	switch {
	case pct >= ConnBadPercent:
		c.Status = CheckBad
	case pct >= ConnWarnPercent:
		c.Status = CheckWarn
	}
	if c.Status != CheckOK {
		c.Advice = "use a connection pool in the application (a smaller pool per process), or a plan with more memory"
	}
	return c
}

// overLong lists the sessions whose duration (by of) passes long, longest first, and the status.
func overLong(acts []activity, long time.Duration, keep func(activity) bool, of func(activity) time.Duration, what func(activity) string) (string, []string, time.Duration) {
	type hit struct {
		a activity
		d time.Duration
	}
	var hits []hit
	for _, a := range acts {
		if keep(a) && of(a) > long {
			hits = append(hits, hit{a, of(a)})
		}
	}
	sort.Slice(hits, func(i, j int) bool { return hits[i].d > hits[j].d })
	status, max := CheckOK, time.Duration(0)
	var det []string
	for _, h := range hits {
		det = append(det, fmt.Sprintf("%s for %s: %s", session(h.a), short(h.d), what(h.a)))
		if h.d > max {
			max = h.d
		}
	}
	switch {
	case max > long*LongBadFactor:
		status = CheckBad
	case len(hits) > 0:
		status = CheckWarn
	}
	return status, det, max
}

func checkLongQueries(d *insightsData, long time.Duration) Check {
	st, det, max := overLong(d.Activity, long, func(a activity) bool { return a.State == "active" },
		func(a activity) time.Duration { return secs(a.QuerySecs) }, func(a activity) string { return a.Query })
	c := Check{Name: "long-queries", Title: "Long-running queries", Status: st, Details: det, Value: fmt.Sprintf("none over %s", short(long))}
	if len(det) > 0 {
		c.Value = fmt.Sprintf("%d over %s, the longest %s", len(det), short(long), short(max))
		c.Advice = "find why they are slow (EXPLAIN), or end one with `select pg_cancel_backend(PID)`"
	}
	return c
}

func checkLongTransactions(d *insightsData, long time.Duration) Check {
	st, det, max := overLong(d.Activity, long, func(a activity) bool { return a.XactSecs != nil },
		func(a activity) time.Duration { return secs(a.XactSecs) }, func(a activity) string { return a.State + ": " + a.Query })
	c := Check{Name: "long-transactions", Title: "Long transactions", Status: st, Details: det, Value: fmt.Sprintf("none open over %s", short(long))}
	if len(det) > 0 {
		c.Value = fmt.Sprintf("%d open over %s, the oldest %s", len(det), short(long), short(max))
		c.Advice = "an open transaction holds its locks and keeps vacuum from removing dead rows: commit or roll back sooner, or end it with `select pg_terminate_backend(PID)`"
	}
	return c
}

func checkIdleInTransaction(d *insightsData, long time.Duration) Check {
	st, det, max := overLong(d.Activity, long, func(a activity) bool { return strings.HasPrefix(a.State, "idle in transaction") },
		func(a activity) time.Duration { return secs(a.StateSecs) }, func(a activity) string { return "last: " + a.Query })
	c := Check{Name: "idle-in-transaction", Title: "Idle in transaction", Status: st, Details: det, Value: fmt.Sprintf("no session idle in a transaction over %s", short(long))}
	if len(det) > 0 {
		c.Value = fmt.Sprintf("%d idle in a transaction over %s, the longest %s", len(det), short(long), short(max))
		c.Advice = "the application opened a transaction and stopped talking: fix the code path that forgets to commit, or set idle_in_transaction_session_timeout"
	}
	return c
}

func checkBlocking(d *insightsData, long time.Duration) Check {
	c := Check{Name: "blocking", Title: "Blocked sessions", Status: CheckOK, Value: "no session waits for another's lock"}
	byPID := map[int]activity{}
	for _, a := range d.Activity {
		byPID[a.PID] = a
	}
	n := 0
	for _, a := range d.Activity {
		if len(a.BlockedBy) == 0 {
			continue
		}
		n++
		var by []string
		for _, p := range a.BlockedBy {
			if b, ok := byPID[p]; ok {
				by = append(by, fmt.Sprintf("%s [%s] %s", session(b), b.State, b.Query))
			} else {
				by = append(by, fmt.Sprintf("pid %d", p))
			}
		}
		c.Details = append(c.Details, fmt.Sprintf("%s waits %s: %s; blocked by %s", session(a), short(secs(a.QuerySecs)), a.Query, strings.Join(by, "; ")))
		if secs(a.QuerySecs) > long*LongBadFactor {
			c.Status = CheckBad
		} else if c.Status == CheckOK {
			c.Status = CheckWarn
		}
	}
	if n > 0 {
		c.Value = fmt.Sprintf("%d waiting for another's lock", n)
		c.Advice = "the blocking session holds a lock (often in an open transaction): let it finish, or end it with `select pg_terminate_backend(PID)`"
	}
	return c
}

func checkHit(name, title, what string, hit, read int64) Check {
	c := Check{Name: name, Title: title, Status: CheckOK}
	total := hit + read
	if total < MinHitBlocks {
		c.Value = fmt.Sprintf("too few reads to judge (%d blocks)", total)
		return c
	}
	ratio := float64(hit) / float64(total)
	c.Value = fmt.Sprintf("%.2f%% of %s", math.Floor(ratio*10000)/100, what)
	switch {
	case ratio < HitBad:
		c.Status = CheckBad
	case ratio < HitWarn:
		c.Status = CheckWarn
	}
	if c.Status != CheckOK {
		c.Advice = "the working set does not fit in memory: a plan with more memory, or fewer full scans (see the top queries)"
	}
	return c
}

func checkUnusedIndexes(d *insightsData) Check {
	c := Check{Name: "unused-indexes", Title: "Unused indexes", Status: CheckOK, Value: "every index has been used"}
	var total int64
	for _, u := range d.Unused {
		c.Details = append(c.Details, fmt.Sprintf("%s on %s (%s)", u.Index, u.Table, humanBytes(u.Bytes)))
		total += u.Bytes
	}
	if len(d.Unused) > 0 {
		c.Status = CheckWarn
		c.Value = fmt.Sprintf("%d never used since the statistics were reset (%s)", len(d.Unused), humanBytes(total))
		c.Advice = "an index no query uses still slows every write and takes space: drop it (`drop index concurrently NAME`) once you are sure no rare job needs it"
	}
	return c
}

func checkDuplicateIndexes(d *insightsData) Check {
	c := Check{Name: "duplicate-indexes", Title: "Duplicate indexes", Status: CheckOK, Value: "none"}
	for _, x := range d.Duplicates {
		c.Details = append(c.Details, fmt.Sprintf("%s on %s", strings.Join(x.Indexes, " = "), x.Table))
	}
	if len(d.Duplicates) > 0 {
		c.Status = CheckWarn
		c.Value = fmt.Sprintf("%d sets of identical indexes", len(d.Duplicates))
		c.Advice = "keep one index of each set and drop the others"
	}
	return c
}

func checkBloat(d *insightsData) Check {
	c := Check{Name: "bloat", Title: "Table bloat (dead rows)", Status: CheckOK, Value: "no table is mostly dead rows"}
	for _, b := range d.Bloat {
		c.Details = append(c.Details, fmt.Sprintf("%s: %d dead of %d rows", b.Table, b.Dead, b.Live+b.Dead))
	}
	if len(d.Bloat) > 0 {
		c.Status = CheckWarn
		c.Value = fmt.Sprintf("%d tables with more than %.0f%% dead rows", len(d.Bloat), BloatRatio*100)
		c.Advice = "vacuum cannot keep up (or a long transaction holds it back): run `vacuum (verbose) TABLE`, and check the long transactions"
	}
	return c
}

func checkTopQueries(d *insightsData) Check {
	c := Check{Name: "top-queries", Title: "Top queries by total time", Status: CheckOK}
	s := d.Statements
	if s == nil {
		c.Status = CheckWarn
		c.Value = "pg_stat_statements is not installed or not loaded"
		c.Advice = "a database created before it was: `stackblaze db update {db} --plan PLAN` (its plan) loads it with a restart, then as the superuser, in the postgres database: `create extension pg_stat_statements`"
		return c
	}
	for _, q := range s.Top {
		share := 0.0
		if s.TotalMs > 0 {
			share = q.TotalMs / s.TotalMs
		}
		c.Details = append(c.Details, fmt.Sprintf("%.0f%%  %s total, %d calls, %s mean: %s", share*100, ms(q.TotalMs), q.Calls, ms(q.MeanMs), q.Query))
	}
	c.Value = fmt.Sprintf("the application's statements took %s in all", ms(s.TotalMs))
	if len(s.Top) > 0 && s.TotalMs >= TopMinMs && s.Top[0].TotalMs/s.TotalMs >= TopShare {
		c.Status = CheckWarn
		c.Value = fmt.Sprintf("one statement takes %.0f%% of the %s the application's statements took", s.Top[0].TotalMs/s.TotalMs*100, ms(s.TotalMs))
		c.Advice = "make that statement cheaper (EXPLAIN ANALYZE it; an index, fewer calls), it is where the database's time goes"
	}
	return c
}

func ms(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1fs", v/1000)
	}
	return fmt.Sprintf("%.1fms", v)
}

func checkDisk(disk *DiskUsage) Check {
	c := Check{Name: "disk", Title: "Disk use", Status: CheckOK}
	if disk == nil {
		c.Status = CheckWarn
		c.Value = "could not be read in the database's container"
		return c
	}
	var parts []string
	for _, v := range disk.Volumes {
		p := fmt.Sprintf("%s %.0f%% of %s", v.Volume, v.UsedPercent, humanBytes(v.SizeBytes))
		if v.Volume == "data" && disk.WALBytes > 0 {
			p += fmt.Sprintf(" (WAL %s)", humanBytes(disk.WALBytes))
		}
		parts = append(parts, p)
		switch {
		case v.UsedPercent >= DiskBadPercent || v.Full():
			c.Status = CheckBad
		case v.UsedPercent >= DiskWarnPercent && c.Status == CheckOK:
			c.Status = CheckWarn
		}
	}
	c.Value = strings.Join(parts, ", ")
	if c.Status != CheckOK {
		c.Advice = "grow the volume before PostgreSQL stops: `stackblaze db resize {db} --storage SIZE`, or let the cluster do it (`stackblaze db resize {db} --auto --max SIZE`)"
	}
	return c
}

func checkArchiving(d *insightsData, reason string) Check {
	a := d.Archiver
	c := Check{Name: "wal-archiving", Title: "WAL archiving", Status: CheckOK}
	if d.ArchiveMode != "on" && d.ArchiveMode != "always" {
		c.Status = CheckBad
		c.Value = "archive_mode is " + d.ArchiveMode + ": no WAL reaches the backups"
		c.Advice = "the database's server settings were changed: run `stackblaze db create` with its spec again"
		return c
	}
	switch {
	case a.Failed > 0 && a.LastFailedTime != nil && (a.LastArchivedTime == nil || a.LastFailedTime.After(*a.LastArchivedTime)):
		c.Status = CheckBad
		c.Value = fmt.Sprintf("failing: segment %s could not be archived (%d failures since the statistics were reset), last at %s", a.LastFailedWAL, a.Failed, a.LastFailedTime.UTC().Format(time.RFC3339))
		if reason != "" {
			c.Details = append(c.Details, reason)
		}
		c.Advice = "WAL piles up on the data volume until archiving works, and backups cannot complete: fix the cause above (`stackblaze db logs {db} --level error` shows every attempt)"
	case a.LastArchivedTime != nil:
		c.Value = fmt.Sprintf("last segment %s archived %s ago", a.LastArchivedWAL, short(d.Now.Sub(*a.LastArchivedTime)))
		if a.Failed > 0 {
			c.Value += fmt.Sprintf(" (%d failures before it, since recovered)", a.Failed)
		}
	default:
		c.Value = "no segment archived yet"
	}
	return c
}

// archiveFailure is what the server's log says about the last failed archive command: the
// failure and pgBackRest's error before it.
func archiveFailure(ctx context.Context, c *kube.Client, name string) string {
	entries, err := ReadLogEntries(ctx, c.Clientset, c.Namespace, name, LogOptions{Tail: 2000})
	if err != nil {
		return ""
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if !strings.Contains(e.Message, "archive command failed") {
			continue
		}
		why := e.Message
		for j := i - 1; j >= 0 && j >= i-20; j-- {
			if p := entries[j]; p.Source == LogSourcePgBackRest && p.Level == "ERROR" {
				why = "pgBackRest: " + strings.TrimSpace(p.Message) + " (" + e.Message + ")"
				break
			}
		}
		return why
	}
	return ""
}

func checkXIDAge(d *insightsData) Check {
	c := Check{Name: "xid-age", Title: "Transaction ID age", Status: CheckOK,
		Value: fmt.Sprintf("%d (%.1f%% of the way to wraparound)", d.XIDAge, float64(d.XIDAge)*100/float64(1<<31))}
	switch {
	case d.XIDAge >= XIDBad:
		c.Status = CheckBad
	case d.XIDAge >= XIDWarn:
		c.Status = CheckWarn
	}
	if c.Status != CheckOK {
		c.Advice = "vacuum is not freezing old rows: end long transactions, then `vacuum (freeze, verbose)` the oldest tables; PostgreSQL stops writes before wraparound"
	}
	return c
}

func checkVacuum(d *insightsData) Check {
	c := Check{Name: "vacuum", Title: "Vacuum and analyze (biggest tables)", Status: CheckOK, Value: "no table"}
	ago := func(t *time.Time) string {
		if t == nil {
			return "never"
		}
		return short(d.Now.Sub(*t)) + " ago"
	}
	behind := 0
	for _, t := range d.Tables {
		line := fmt.Sprintf("%s (%s, %d rows): vacuumed %s, analyzed %s", t.Table, humanBytes(t.Bytes), t.Live, ago(t.LastVacuum), ago(t.LastAnalyze))
		if t.ModSinceAnalyze > VacuumMinChanged && float64(t.ModSinceAnalyze) > VacuumRatio*float64(t.Live) {
			behind++
			line += fmt.Sprintf("; %d rows changed since", t.ModSinceAnalyze)
		}
		c.Details = append(c.Details, line)
	}
	if len(d.Tables) > 0 {
		c.Value = fmt.Sprintf("%d biggest tables looked at", len(d.Tables))
	}
	if behind > 0 {
		c.Status = CheckWarn
		c.Value = fmt.Sprintf("%d of the biggest tables changed a lot since their last analyze", behind)
		c.Advice = "autovacuum is behind: run `analyze TABLE` (and `vacuum TABLE`), and look for long transactions holding it back"
	}
	return c
}

func checkBackups(repo *bk.Repository, err error, now, created time.Time) Check {
	c := Check{Name: "backups", Title: "Backups", Status: CheckOK}
	if err != nil || repo == nil {
		c.Status = CheckBad
		c.Value = "the backup repository could not be read"
		if err != nil {
			c.Details = []string{err.Error()}
		}
		c.Advice = "`stackblaze db backup list {db}` says why"
		return c
	}
	var last *bk.Backup
	for i := range repo.Backups {
		if b := &repo.Backups[i]; b.Current && (last == nil || b.Stop.After(last.Stop)) {
			last = b
		}
	}
	if last == nil {
		c.Value = "no backup yet"
		c.Status = CheckWarn
		if now.Sub(created) > BackupWarnAge {
			c.Status = CheckBad
		}
		c.Advice = "the daily backup has not run: `stackblaze db backup create {db}` takes one now; check the CronJob {db}-backup"
		return c
	}
	age := now.Sub(last.Stop)
	c.Value = fmt.Sprintf("last %s (%s) finished %s ago", last.ID, last.Type, short(age))
	switch {
	case age > BackupBadAge:
		c.Status = CheckBad
	case age > BackupWarnAge:
		c.Status = CheckWarn
	}
	if c.Status != CheckOK {
		c.Advice = "the daily backup did not run: check the CronJob {db}-backup and its jobs' logs (`stackblaze db logs {db} --backups`); `stackblaze db backup create {db}` takes one now"
	}
	return c
}

// humanBytes is a size in binary units (1.5 GiB).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
