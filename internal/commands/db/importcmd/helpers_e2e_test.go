package importcmd_test

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// seedSQL is a realistic schema, as the application makes it: a schema of its own, an enum, a
// serial and an identity column, a foreign key, an index, a sequence of its own that was used,
// a view, a function, an empty table, and some thousands of rows with newlines, tabs, quotes,
// arrays, JSON and NULLs.
const seedSQL = `create schema sales;
create type sales.status as enum ('new', 'paid', 'shipped');
create table customers (id serial primary key, name text not null, email text unique, created timestamptz not null default '2026-01-01 10:00+00');
create table sales.orders (id bigint generated always as identity primary key, customer_id int not null references customers,
  status sales.status not null default 'new', total numeric(12,2), note text, tags text[], data jsonb);
create index orders_customer on sales.orders (customer_id);
create sequence invoice_no start 1000 increment 7;
create view sales.big_orders as select o.id, c.name, o.total from sales.orders o join customers c on c.id = o.customer_id where o.total > 900;
create function sales.order_total(c int) returns numeric language sql stable as $$ select coalesce(sum(total), 0) from sales.orders where customer_id = c $$;
create table empty_table (k text primary key);
comment on table sales.orders is 'every order';
insert into customers (name, email) select 'customer ' || g, 'c' || g || '@example.com' from generate_series(1, 3000) g;
insert into sales.orders (customer_id, status, total, note, tags, data)
  select 1 + g % 3000, (array['new', 'paid', 'shipped'])[1 + g % 3]::sales.status, (g * 37 % 100000) / 100.0,
    case when g % 10 = 0 then E'line one\nline\ttwo ''quoted''' end, array['t' || g % 5], jsonb_build_object('g', g)
  from generate_series(1, 8000) g;
select count(nextval('invoice_no')) from generate_series(1, 42);`

// fingerprintSQL lists, in order, every table of the application's database with its row count
// and the md5 of its ordered rows, every sequence with its value, every view with its
// definition's md5, every index and function (those of extensions aside). Times in UTC.
const fingerprintSQL = `set timezone = 'UTC';
with rel as (
  select c.oid, c.relkind, c.relowner, n.nspname, c.relname
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\_toast%'
    and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e'))
select 'table ' || oid::regclass || ' rows=' ||
  (xpath('/row/n/text()', query_to_xml(format('select count(*) as n from %s', oid::regclass), false, true, '')))[1]::text || ' md5=' ||
  (xpath('/row/m/text()', query_to_xml(format('select md5(coalesce(string_agg(t::text, %L order by t::text), %L)) as m from %s t', E'\n', '', oid::regclass), false, true, '')))[1]::text
  from rel where relkind in ('r', 'p')
union all
select 'sequence ' || schemaname || '.' || sequencename || ' last=' || coalesce(last_value::text, 'none') from pg_sequences
union all
select 'view ' || oid::regclass || ' ' || md5(pg_get_viewdef(oid)) from rel where relkind in ('v', 'm')
union all
select 'index ' || oid::regclass from rel where relkind = 'i'
union all
select 'function ' || p.oid::regprocedure from pg_proc p join pg_namespace n on n.oid = p.pronamespace
  where n.nspname not in ('pg_catalog', 'information_schema')
    and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
order by 1`

// ownersSQL lists every object outside the system schemas (those of extensions aside) with its
// owner.
const ownersSQL = `with obj as (
  select 'relation ' || c.oid::regclass as name, c.relowner as owner, n.nspname
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'v', 'm', 'S', 'i', 'f')
      and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')
  union all
  select 'function ' || p.oid::regprocedure, p.proowner, n.nspname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
  union all
  select 'type ' || t.oid::regtype, t.typowner, n.nspname from pg_type t join pg_namespace n on n.oid = t.typnamespace
    where t.typtype in ('c', 'd', 'e', 'r') and (t.typrelid = 0 or (select relkind from pg_class where oid = t.typrelid) = 'c')
      and not exists (select 1 from pg_depend d where d.classid = 'pg_type'::regclass and d.objid = t.oid and d.deptype = 'e')
  union all
  select 'schema ' || nspname, nspowner, nspname from pg_namespace where nspname <> 'public')
select name || ' owner=' || pg_get_userbyid(owner) from obj
where nspname not in ('pg_catalog', 'information_schema') and nspname not like 'pg\_toast%' and nspname not like 'pg\_temp%'
order by 1`

// fingerprint is the contents of database db (fingerprintSQL), read as its application.
func fingerprint(t *testing.T, env *testbed.Env, ns, db string) string {
	t.Helper()
	return env.SQL(t, ns, db, fingerprintSQL)
}

// owners checks that every object of db belongs to its application role, and returns the
// objects' names.
func owners(t *testing.T, env *testbed.Env, ns, db string) []string {
	t.Helper()
	var names []string
	for _, line := range strings.Split(env.SQL(t, ns, db, ownersSQL), "\n") {
		name, owner, _ := strings.Cut(line, " owner=")
		if owner != database.RoleName(db) {
			t.Errorf("database %s: %s is owned by %s, not by %s", db, name, owner, database.RoleName(db))
		}
		names = append(names, name)
	}
	return names
}

func mustRun(t *testing.T, env *testbed.Env, ns string, args ...string) testbed.Result {
	t.Helper()
	r := env.Run(t, ns, args...)
	if r.Code != 0 {
		t.Fatalf("%v: exit %d\n%s", args, r.Code, r.Stderr)
	}
	return r
}

// importJSON runs db import -o json with args, and decodes its summary.
func importJSON(t *testing.T, env *testbed.Env, ns string, args ...string) (*database.RestoreResult, string) {
	t.Helper()
	r := mustRun(t, env, ns, append(append([]string{"db", "import"}, args...), "-o", "json")...)
	var res struct {
		database.RestoreResult
		Source string `json:"source"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("import -o json: %v\n%s", err, r.Stdout)
	}
	return &res.RestoreResult, res.Source
}

func randomFile(t *testing.T, dir string) string {
	t.Helper()
	b := make([]byte, 64*1024)
	_, _ = rand.Read(b)
	p := filepath.Join(dir, "random.dump")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// truncated writes the first fraction of file to a new file and returns its name.
func truncated(t *testing.T, file string, fraction float64) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := file + ".truncated"
	if err := os.WriteFile(p, b[:int(float64(len(b))*fraction)], 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// dataLines keeps the table and sequence lines of a fingerprint: what two majors write alike
// (view definitions may be printed differently).
func dataLines(fp string) string {
	var keep []string
	for _, l := range strings.Split(fp, "\n") {
		if strings.HasPrefix(l, "table ") || strings.HasPrefix(l, "sequence ") || strings.HasPrefix(l, "function ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
