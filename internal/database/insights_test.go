package database

import (
	"strings"
	"testing"
	"time"

	bk "github.com/stackblaze/stackblaze/internal/backup"
)

func f(v float64) *float64 { return &v }

// The session checks judge by --long: warn past it, bad past LongBadFactor times it; blocking
// names both sessions' queries.
func TestSessionChecks(t *testing.T) {
	long := 5 * time.Second
	d := &insightsData{Activity: []activity{
		{PID: 10, User: "app", DB: "app", State: "active", Query: "begin; lock table orders in access exclusive mode; select pg_sleep(600)", QuerySecs: f(8), XactSecs: f(8), StateSecs: f(8)},
		{PID: 11, User: "app", DB: "app", State: "active", Query: "select count(*) from orders", QuerySecs: f(7), XactSecs: f(7), StateSecs: f(7), BlockedBy: []int{10}},
		{PID: 12, User: "app", DB: "app", State: "idle in transaction", Query: "select 1", XactSecs: f(9), StateSecs: f(9)},
		{PID: 13, User: "app", DB: "app", State: "idle", Query: "select 2", StateSecs: f(100)},
	}}
	for _, tc := range []struct {
		c      Check
		status string
		detail string
	}{
		{checkLongQueries(d, long), CheckWarn, "pid 10"},
		{checkLongTransactions(d, long), CheckWarn, "pid 12"},
		{checkIdleInTransaction(d, long), CheckWarn, "pid 12 (app@app) for 9.0s"},
		{checkBlocking(d, long), CheckWarn, "select count(*) from orders; blocked by pid 10 (app@app) [active] begin; lock table orders"},
	} {
		if tc.c.Status != tc.status || !strings.Contains(strings.Join(tc.c.Details, "\n"), tc.detail) || tc.c.Advice == "" {
			t.Errorf("%s: %s %q %q", tc.c.Name, tc.c.Status, tc.c.Details, tc.c.Advice)
		}
	}
	if c := checkLongQueries(d, time.Second/2); c.Status != CheckBad {
		t.Errorf("a query 16 times --long: %s", c.Status)
	}
	if c := checkIdleInTransaction(d, 10*time.Second); c.Status != CheckOK || len(c.Details) != 0 {
		t.Errorf("no session idle past --long: %+v", c)
	}
}

func TestTopQueries(t *testing.T) {
	d := &insightsData{}
	if c := checkTopQueries(d); c.Status != CheckWarn || !strings.Contains(c.Value, "not installed") {
		t.Errorf("without pg_stat_statements: %+v", c)
	}
	d.Statements = &struct {
		TotalMs float64 `json:"total_ms"`
		Top     []struct {
			Query   string  `json:"query"`
			Calls   int64   `json:"calls"`
			TotalMs float64 `json:"total_ms"`
			MeanMs  float64 `json:"mean_ms"`
		} `json:"top"`
	}{TotalMs: 1500}
	d.Statements.Top = append(d.Statements.Top, struct {
		Query   string  `json:"query"`
		Calls   int64   `json:"calls"`
		TotalMs float64 `json:"total_ms"`
		MeanMs  float64 `json:"mean_ms"`
	}{"select pg_sleep($1)", 1, 1200, 1200})
	if c := checkTopQueries(d); c.Status != CheckWarn || !strings.Contains(c.Value, "80%") {
		t.Errorf("one statement at 80%%: %+v", c)
	}
	d.Statements.TotalMs, d.Statements.Top[0].TotalMs = 900, 800
	if c := checkTopQueries(d); c.Status != CheckOK {
		t.Errorf("under a second in all: %+v", c)
	}
}

// The backups' age against the daily promise (a repository written here: a backup a day old
// cannot be made on demand; the end-to-end test shifts the clock instead).
func TestBackupsCheck(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	repo := &bk.Repository{Backups: []bk.Backup{{ID: "20261129-030000F", Type: "full", Stop: now.Add(-20 * time.Hour), Current: true}}}
	for _, tc := range []struct {
		age    time.Duration
		status string
	}{{0, CheckOK}, {6 * time.Hour, CheckWarn}, {30 * time.Hour, CheckBad}} {
		if c := checkBackups(repo, nil, now.Add(tc.age), now.Add(-40*24*time.Hour)); c.Status != tc.status {
			t.Errorf("a backup %s old: %+v", 20*time.Hour+tc.age, c)
		}
	}
	if c := checkBackups(&bk.Repository{}, nil, now, now.Add(-time.Hour)); c.Status != CheckWarn {
		t.Errorf("a new database without a backup: %+v", c)
	}
	if c := checkBackups(&bk.Repository{}, nil, now, now.Add(-48*time.Hour)); c.Status != CheckBad {
		t.Errorf("a two-day-old database without a backup: %+v", c)
	}
}

func TestArchivingCheck(t *testing.T) {
	ok, failed := time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC), time.Date(2026, 11, 30, 11, 5, 0, 0, time.UTC)
	d := &insightsData{ArchiveMode: "on", Now: failed.Add(time.Minute)}
	d.Archiver.LastArchivedTime, d.Archiver.LastArchivedWAL = &ok, "000000010000000000000002"
	if c := checkArchiving(d, ""); c.Status != CheckOK {
		t.Errorf("archiving: %+v", c)
	}
	d.Archiver.Failed, d.Archiver.LastFailedTime, d.Archiver.LastFailedWAL = 3, &failed, "000000010000000000000003"
	c := checkArchiving(d, "ERROR: [041]: unable to open file: Permission denied")
	if c.Status != CheckBad || !strings.Contains(c.Value, "000000010000000000000003") || len(c.Details) != 1 {
		t.Errorf("archiving failing: %+v", c)
	}
}
