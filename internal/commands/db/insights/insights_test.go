package insights

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/output"
)

// report is a report with every status, details and advice.
func report() *database.Insights {
	return &database.Insights{
		Database: "shop",
		Time:     time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC),
		Status:   database.CheckBad,
		Checks: []database.Check{
			{Name: "connections", Title: "Connections", Status: database.CheckOK, Value: "4 of 97 (4%)"},
			{Name: "blocking", Title: "Blocked sessions", Status: database.CheckWarn, Value: "1 waiting for another's lock",
				Details: []string{"pid 81 (shop@shop) waits 3.2s: select count(*) from orders; blocked by pid 80 (shop@shop) [idle in transaction] lock table orders"},
				Advice:  "the blocking session holds a lock (often in an open transaction): let it finish, or end it with `select pg_terminate_backend(PID)`"},
			{Name: "wal-archiving", Title: "WAL archiving", Status: database.CheckBad, Value: "failing: segment 000000010000000000000003 could not be archived",
				Details: []string{"ERROR: [041]: unable to open file"}, Advice: "fix the cause above"},
		},
	}
}

// The text report on a terminal (colours) and without one (plain), against golden files.
func TestGoldenInsights(t *testing.T) {
	for _, tty := range []bool{false, true} {
		var out bytes.Buffer
		s := output.Test(nil, &out, &bytes.Buffer{})
		s.OutTTY, s.ErrTTY = tty, tty
		Render(s, report())
		cmdtest.Golden(t, fmt.Sprintf("insights-tty-%v", tty), out.String())
	}
}

// The JSON report decodes into the documented shape (docs/commands.md, db insights).
func TestInsightsJSONShape(t *testing.T) {
	var out bytes.Buffer
	if err := output.JSON(&out, report()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Database string    `json:"database"`
		Time     time.Time `json:"time"`
		Status   string    `json:"status"`
		Checks   []struct {
			Name    string   `json:"name"`
			Title   string   `json:"title"`
			Status  string   `json:"status"`
			Value   string   `json:"value"`
			Advice  string   `json:"advice"`
			Details []string `json:"details"`
		} `json:"checks"`
	}
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Status != "bad" || len(doc.Checks) != 3 || doc.Checks[1].Details == nil || doc.Checks[2].Advice == "" {
		t.Errorf("decoded %+v", doc)
	}
}

func TestFailing(t *testing.T) {
	if got := failing(report(), database.CheckWarn); got != "blocking is warn, wal-archiving is bad" {
		t.Errorf("failing(warn) = %q", got)
	}
	if got := failing(report(), database.CheckBad); got != "wal-archiving is bad" {
		t.Errorf("failing(bad) = %q", got)
	}
}
