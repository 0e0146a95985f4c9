package dump_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackblaze/stackblaze/internal/testbed"
)

// db dump: the custom format to a file with its -o json summary (the file's size, the format),
// to stdout through a pipe; plain SQL with --table and --exclude-table (only those tables'
// definitions and rows, no owners or privileges); --schema-only (no rows); a --table that
// matches nothing fails and leaves no file.
func TestE2EDump(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	dir := t.TempDir()
	const db = "dumped"
	if r := env.Run(t, ns, "db", "create", db); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	env.SQL(t, ns, db, `create table customers (id serial primary key, name text not null);
create table orders (id bigint generated always as identity primary key, customer_id int references customers, total numeric(10,2));
create table audit_log (id serial primary key, what text);
create view big_orders as select * from orders where total > 500;
insert into customers (name) select 'customer ' || g from generate_series(1, 2000) g;
insert into orders (customer_id, total) select 1 + g % 2000, g % 1000 from generate_series(1, 5000) g;
insert into audit_log (what) select 'event ' || g from generate_series(1, 100) g`)

	run := func(args ...string) testbed.Result {
		t.Helper()
		r := env.Run(t, ns, append([]string{"db", "dump", db}, args...)...)
		if r.Code != 0 {
			t.Fatalf("dump %v: exit %d\n%s", args, r.Code, r.Stderr)
		}
		return r
	}

	// Custom format to a file, -o json.
	file := filepath.Join(dir, "dumped.dump")
	r := run("-f", file, "-o", "json")
	var sum struct {
		Database string  `json:"database"`
		Format   string  `json:"format"`
		Bytes    int64   `json:"bytes"`
		Seconds  float64 `json:"seconds"`
		File     string  `json:"file"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &sum); err != nil {
		t.Fatalf("dump -o json: %v\n%s", err, r.Stdout)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Database != db || sum.Format != "custom" || sum.Bytes != int64(len(b)) || sum.Bytes < 10000 || sum.Seconds <= 0 || sum.File != file {
		t.Errorf("dump -o json: %+v (the file has %d bytes)", sum, len(b))
	}
	if !strings.HasPrefix(string(b), "PGDMP") {
		t.Errorf("the custom dump begins with %q", b[:min(len(b), 16)])
	}
	if !strings.Contains(r.Stderr, "Dumped dumped (custom format) to "+file) {
		t.Errorf("no summary line on stderr:\n%s", r.Stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the directory has %d files, want the dump alone", len(entries))
	}

	// The same to stdout (a pipe, not a terminal).
	r = run()
	if !strings.HasPrefix(r.Stdout, "PGDMP") || len(r.Stdout) < 10000 {
		t.Errorf("dump to stdout: %d bytes beginning %q", len(r.Stdout), r.Stdout[:min(len(r.Stdout), 16)])
	}

	// Plain SQL of two tables.
	r = run("--format", "plain", "--table", "public.orders", "--table", "customers", "--exclude-table", "customers")
	sql := r.Stdout
	for _, want := range []string{"-- PostgreSQL database dump", "CREATE TABLE public.orders", "COPY public.orders (id, customer_id, total) FROM stdin;", "-- PostgreSQL database dump complete"} {
		if !strings.Contains(sql, want) {
			t.Errorf("the plain dump lacks %q", want)
		}
	}
	for _, unwanted := range []string{"CREATE TABLE public.customers", "audit_log", "big_orders", "OWNER TO", "GRANT "} {
		if strings.Contains(sql, unwanted) {
			t.Errorf("the plain dump of orders has %q", unwanted)
		}
	}
	if rows := strings.Count(sql[strings.Index(sql, "FROM stdin;"):strings.Index(sql, "\n\\.\n")], "\n"); rows != 5000 {
		t.Errorf("the plain dump has %d rows of orders, want 5000", rows)
	}

	// Schema only: every table and the view, no rows.
	r = run("--format", "plain", "--schema-only")
	if !strings.Contains(r.Stdout, "CREATE TABLE public.audit_log") || !strings.Contains(r.Stdout, "CREATE VIEW public.big_orders") || strings.Contains(r.Stdout, "COPY ") {
		t.Errorf("the schema-only dump:\n%s", r.Stdout)
	}

	// A table that does not exist: an error, and no file.
	missing := filepath.Join(dir, "missing.dump")
	r = env.Run(t, ns, "db", "dump", db, "-f", missing, "--table", "nosuch")
	if r.Code == 0 || !strings.Contains(r.Stderr, "nosuch") {
		t.Errorf("dump --table nosuch: exit %d\n%s", r.Code, r.Stderr)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("a failed dump left files: %v", entries)
	}
	// A database that does not exist: exit 3.
	if r := env.Run(t, ns, "db", "dump", "nosuch", "-f", missing); r.Code != 3 {
		t.Errorf("dump of a missing database: exit %d\n%s", r.Code, r.Stderr)
	}
}
