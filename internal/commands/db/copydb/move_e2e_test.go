package copydb_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

const schema = `
create sequence order_no start 1000;
create table customers (id serial primary key, email text not null unique);
create table orders (id bigint primary key default nextval('order_no'), customer int references customers,
  total numeric not null, note text);
create index orders_customer on orders (customer);
create view big_orders as select * from orders where total > 100;
create function order_total(c int) returns numeric language sql stable as
  $$ select coalesce(sum(total), 0) from orders where customer = c $$;
insert into customers (email) select 'c' || i || '@example.com' from generate_series(1, 300) i;
insert into orders (customer, total, note) select 1 + i % 300, i, repeat('x', i % 50) from generate_series(1, 3000) i;
`

// state is every table's row count and a checksum of its ordered rows, the view, the function
// and the sequences' values.
const state = `select (select count(*) || ':' || md5(string_agg(c::text, ',' order by c.id)) from customers c)
  || '|' || (select count(*) || ':' || md5(string_agg(o::text, ',' order by o.id)) from orders o)
  || '|' || (select count(*) from big_orders) || '|' || order_total(7)
  || '|' || (select last_value from order_no) || '|' || (select last_value from customers_id_seq)`

// owners are the owners of the objects of the public schema (relations and functions).
const owners = `select string_agg(distinct o, ',') from (
  select pg_get_userbyid(relowner) o from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'
  union all select pg_get_userbyid(proowner) from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public') x`

// db copy from 15 to 17 inside the cluster (and into a new database with --create), db pull into a PostgreSQL on this machine of another
// major (plain SQL for its older psql), and db push from it into a new database: the same rows,
// checksums, view, function and sequences each time; in the cluster the application role owns
// everything; a non-empty target without --clean and a copy to an older major are refused with
// nothing changed.
func TestE2ECopyPullPush(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	for _, args := range [][]string{{"create", "src", "--version", "15"}, {"create", "dst"}, {"create", "pushed"}} {
		if r := env.Run(t, ns, append([]string{"db"}, args...)...); r.Code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, r.Code, r.Stderr)
		}
	}
	env.SQL(t, ns, "src", schema)
	want := env.SQL(t, ns, "src", state)
	if !strings.HasPrefix(want, "300:") {
		t.Fatalf("the seeded state: %s", want)
	}

	// 15 → 17, in the cluster.
	r := env.Run(t, ns, "db", "copy", "src", "dst", "-o", "json")
	if r.Code != 0 {
		t.Fatalf("copy: exit %d\n%s", r.Code, r.Stderr)
	}
	var res database.Moved
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || res.Objects < 6 {
		t.Errorf("copy -o json: %v %s", err, r.Stdout)
	}
	if got := env.SQL(t, ns, "dst", state); got != want {
		t.Errorf("dst after the copy: %s, want %s", got, want)
	}
	if got := env.SQL(t, ns, "dst", owners); got != database.RoleName("dst") {
		t.Errorf("the objects of dst belong to %s, want %s", got, database.RoleName("dst"))
	}
	if got := env.SQL(t, ns, "dst", "select current_setting('server_version_num')::int / 10000"); got != "17" {
		t.Errorf("dst runs %s", got)
	}
	// Refused, nothing changed: a non-empty target, and a copy to an older major.
	env.SQL(t, ns, "dst", "insert into customers (email) values ('only-in-dst@example.com')")
	changed := env.SQL(t, ns, "dst", state)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"copy", "src", "dst"}, "is not empty"},
		{[]string{"copy", "dst", "src"}, "a copy goes to the same major or a newer one"},
		{[]string{"copy", "src", "src"}, "needs two databases"},
		{[]string{"copy", "src"}, "needs SOURCE and TARGET"},
	} {
		r := env.Run(t, ns, append([]string{"db"}, tc.args...)...)
		if r.Code != 2 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q\n%s", tc.args, r.Code, tc.want, r.Stderr)
		}
	}
	if got := env.SQL(t, ns, "dst", state); got != changed {
		t.Errorf("a refused copy changed dst: %s, then %s", changed, got)
	}
	if got := env.SQL(t, ns, "src", state); got != want {
		t.Errorf("a refused copy changed src: %s", got)
	}
	// --clean replaces dst's objects with src's.
	if r := env.Run(t, ns, "db", "copy", "src", "dst", "--clean", "--yes"); r.Code != 0 {
		t.Fatalf("copy --clean: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := env.SQL(t, ns, "dst", state); got != want {
		t.Errorf("dst after copy --clean: %s, want %s", got, want)
	}

	// --create: a new database like src (15), with src's data; not over an existing one.
	if r := env.Run(t, ns, "db", "copy", "src", "fresh", "--create"); r.Code != 0 {
		t.Fatalf("copy --create: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := env.SQL(t, ns, "fresh", state+" || '|' || current_setting('server_version_num')::int / 10000"); got != want+"|15" {
		t.Errorf("fresh after copy --create: %s, want %s on 15", got, want)
	}
	if got := env.SQL(t, ns, "fresh", owners); got != database.RoleName("fresh") {
		t.Errorf("the objects of fresh belong to %s", got)
	}
	if r := env.Run(t, ns, "db", "copy", "src", "dst", "--create"); r.Code != 6 || !strings.Contains(r.Stderr, "already exists") {
		t.Errorf("copy --create onto an existing database: exit %d\n%s", r.Code, r.Stderr)
	}

	// Pull dst (17) into a PostgreSQL on this machine (Debian's: 15).
	local := testbed.StartLocalPostgres(t)
	if local.Version >= 17 {
		t.Fatalf("the local PostgreSQL is %d: the test wants another major than the server's 17", local.Version)
	}
	r = env.Run(t, ns, "db", "pull", "dst", local.URL, "-o", "json")
	if r.Code != 0 {
		t.Fatalf("pull: exit %d\n%s", r.Code, r.Stderr)
	}
	res = database.Moved{}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || res.Format != "plain" || strings.Contains(r.Stdout+r.Stderr, passwordOf(local.URL)) {
		t.Errorf("pull -o json (plain SQL for an older psql, no password): %v %s", err, r.Stdout)
	}
	if got := local.SQL("dev", state); got != want {
		t.Errorf("the local database after the pull: %s, want %s", got, want)
	}
	if got := local.SQL("dev", owners); got != "dev" {
		t.Errorf("the local objects belong to %s, want dev (the URL's user)", got)
	}
	if r := env.Run(t, ns, "db", "pull", "dst", local.URL); r.Code != 2 || !strings.Contains(r.Stderr, "is not empty") || strings.Contains(r.Stderr, passwordOf(local.URL)) {
		t.Errorf("pull into a non-empty database: exit %d\n%s", r.Code, r.Stderr)
	}

	// Push it (15) into a new database (17).
	r = env.Run(t, ns, "db", "push", local.URL, "pushed")
	if r.Code != 0 {
		t.Fatalf("push: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := env.SQL(t, ns, "pushed", state); got != want {
		t.Errorf("pushed after the push: %s, want %s", got, want)
	}
	if got := env.SQL(t, ns, "pushed", owners); got != database.RoleName("pushed") {
		t.Errorf("the objects of pushed belong to %s", got)
	}
}

func passwordOf(url string) string {
	_, rest, _ := strings.Cut(strings.TrimPrefix(url, "postgres://"), ":")
	pw, _, _ := strings.Cut(rest, "@")
	return pw
}
