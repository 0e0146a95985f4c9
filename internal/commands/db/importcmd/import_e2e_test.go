package importcmd_test

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stackblaze/stackblaze/internal/testbed"
)

// db dump, then db import into a new database: the same tables, row counts, checksums of every
// table's ordered rows, sequences at the same values, views and functions, every object owned
// by the new database's role, the -o json summary. A plain SQL dump imports the same with
// --clean over changed contents. Bad input changes nothing (the target's checksum before and
// after): a random file, truncated dumps (custom and plain, with --clean: the drop is rolled
// back too), a non-empty target without --clean, --clean without --yes in CI.
func TestE2EImportDump(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	dir := t.TempDir()
	const src, dst = "shop", "shop-copy"
	for _, db := range []string{src, dst} {
		mustRun(t, env, ns, "db", "create", db)
	}
	env.SQL(t, ns, src, seedSQL)
	want := fingerprint(t, env, ns, src)
	for _, s := range []string{"table customers rows=3000", "table sales.orders rows=8000", "table empty_table rows=0 ",
		"sequence public.invoice_no last=1287", "sequence public.customers_id_seq last=3000", "sequence sales.orders_id_seq last=8000",
		"view sales.big_orders", "function sales.order_total(integer)", "index sales.orders_customer"} {
		if !strings.Contains(want, s) {
			t.Fatalf("the source's fingerprint lacks %q:\n%s", s, want)
		}
	}
	srcObjects := owners(t, env, ns, src)

	// The custom-format dump.
	custom := filepath.Join(dir, "shop.dump")
	mustRun(t, env, ns, "db", "dump", src, "-f", custom)
	// An empty target: nothing to count yet.
	if got := env.SQL(t, ns, dst, "select count(*) from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r'"); got != "0" {
		t.Fatalf("the new database has %s tables", got)
	}
	empty := fingerprint(t, env, ns, dst)

	// Bad input into the empty target: a random file (exit 2), a truncated dump (exit 1).
	r := env.Run(t, ns, "db", "import", dst, "--file", randomFile(t, dir))
	if r.Code != 2 || !strings.Contains(r.Stderr, "not a PostgreSQL dump") {
		t.Errorf("import of a random file: exit %d, want 2 and a clear message\n%s", r.Code, r.Stderr)
	}
	r = env.Run(t, ns, "db", "import", dst, "--file", truncated(t, custom, 0.6))
	if r.Code != 1 || !strings.Contains(r.Stderr, "nothing was changed") {
		t.Errorf("import of a truncated dump: exit %d, want 1\n%s", r.Code, r.Stderr)
	}
	if got := fingerprint(t, env, ns, dst); got != empty {
		t.Fatalf("a refused import changed the target:\n%s", got)
	}

	// The import: the source's contents, every object the target role's. Its objects are the
	// seed's 3 tables, view, 2 sequences (not the identity's), function and type: 8.
	res, source := importJSON(t, env, ns, dst, "--file", custom)
	st, _ := os.Stat(custom)
	if res.Database != dst || res.Format != "custom" || res.Bytes != st.Size() || res.Objects != 8 || res.Seconds <= 0 || source != custom {
		t.Errorf("import -o json: %+v, source %q (the dump has %d bytes)", res, source, st.Size())
	}
	if got := fingerprint(t, env, ns, dst); got != want {
		t.Fatalf("the imported database differs from the source:\n%s\nwant:\n%s", got, want)
	}
	if got := owners(t, env, ns, dst); !reflect.DeepEqual(got, srcObjects) {
		t.Errorf("imported objects %v, want %v", got, srcObjects)
	}
	// The application reads and writes through them, with the sequences where they were.
	if got := env.SQL(t, ns, dst, "insert into customers (name) values ('new') returning id"); got != "3001" {
		t.Errorf("a new customer after the import: %q", got)
	}
	if got, was := env.SQL(t, ns, dst, "select sales.order_total(1)"), env.SQL(t, ns, src, "select sales.order_total(1)"); got != was || got == "0" {
		t.Errorf("sales.order_total(1) is %s after the import, %s in the source", got, was)
	}
	before := fingerprint(t, env, ns, dst)

	// A non-empty target: refused without --clean; --clean without --yes refused in CI;
	// truncated dumps with --clean roll back the drop with the rest.
	for _, tc := range []struct {
		name string
		args []string
		code int
		says string
	}{
		{"not empty", []string{"--file", custom}, 2, "is not empty"},
		{"clean in CI without --yes", []string{"--file", custom, "--clean"}, 2, "refusing to drop the objects of database shop-copy"},
		{"random file with --clean", []string{"--file", randomFile(t, dir), "--clean", "--yes"}, 2, "not a PostgreSQL dump"},
		{"truncated custom with --clean", []string{"--file", truncated(t, custom, 0.5), "--clean", "--yes"}, 1, "truncated or damaged"},
	} {
		r := env.Run(t, ns, append([]string{"db", "import", dst}, tc.args...)...)
		if r.Code != tc.code || !strings.Contains(r.Stderr, tc.says) {
			t.Errorf("%s: exit %d, want %d and %q\n%s", tc.name, r.Code, tc.code, tc.says, r.Stderr)
		}
		if got := fingerprint(t, env, ns, dst); got != before {
			t.Fatalf("%s changed the target:\n%s", tc.name, got)
		}
	}

	// A plain SQL dump with --clean: the row added above is gone, the rest is the source's.
	plain := filepath.Join(dir, "shop.sql")
	mustRun(t, env, ns, "db", "dump", src, "--format", "plain", "-f", plain)
	r = env.Run(t, ns, "db", "import", dst, "--file", truncated(t, plain, 0.7), "--clean", "--yes")
	if r.Code != 1 || !strings.Contains(r.Stderr, "truncated") {
		t.Errorf("import of a truncated plain dump: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := fingerprint(t, env, ns, dst); got != before {
		t.Fatalf("a truncated plain dump changed the target:\n%s", got)
	}
	res, _ = importJSON(t, env, ns, dst, "--file", plain, "--clean", "--yes")
	if res.Format != "plain" {
		t.Errorf("plain import: %+v", res)
	}
	if got := fingerprint(t, env, ns, dst); got != want {
		t.Fatalf("after the plain import with --clean:\n%s\nwant:\n%s", got, want)
	}
	if got := owners(t, env, ns, dst); !reflect.DeepEqual(got, srcObjects) {
		t.Errorf("objects after the plain import %v, want %v", got, srcObjects)
	}

	// Through a pipe: db dump to stdout into db import from stdin, over changed contents.
	env.SQL(t, ns, dst, "delete from sales.orders where id % 2 = 0")
	if got := fingerprint(t, env, ns, dst); got == want {
		t.Fatal("deleting rows did not change the fingerprint")
	}
	sb := env.Binary(t) + " --kubeconfig " + env.Kubeconfig + " -n " + ns
	cmd := env.Command(t, ns, "version")
	cmd.Path, cmd.Args = "/bin/sh", []string{"sh", "-c", sb + " db dump " + src + " | " + sb + " db import " + dst + " --file - --clean --yes"}
	if r := testbed.RunCommand(t, cmd); r.Code != 0 {
		t.Fatalf("dump | import: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := fingerprint(t, env, ns, dst); got != want {
		t.Fatalf("after dump | import:\n%s\nwant:\n%s", got, want)
	}
}

// db import --from URL: a PostgreSQL that runs on this machine, with a password, imported with
// this machine's pg_dump (which gets the URL without the password, and the password in its
// environment only); the result has the local database's contents, owned by the target's role.
func TestE2EImportFrom(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	localURL := testbed.StartLocalPostgres(t).URL
	const db = "legacy"
	mustRun(t, env, ns, "db", "create", db)
	// The local database, made by its own user.
	psql := func(query string) string {
		t.Helper()
		out, err := localPsql(localURL, query)
		if err != nil {
			t.Fatalf("local psql: %v", err)
		}
		return out
	}
	psql(seedSQL)
	want := dataLines(psql(fingerprintSQL))
	if !strings.Contains(want, "table sales.orders rows=8000") {
		t.Fatalf("the local fingerprint: %s", want)
	}

	// A pg_dump in PATH that records how it was run, then runs the real one.
	bin := t.TempDir()
	record := filepath.Join(bin, "record")
	realDump, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Fatalf("this machine has no pg_dump: %v", err)
	}
	wrapper := "#!/bin/sh\nprintf '%s\\n' \"$@\" >" + record + "\necho \"PGPASSWORD=$PGPASSWORD\" >>" + record + "\nexec " + realDump + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "pg_dump"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(localURL)
	if err != nil {
		t.Fatal(err)
	}
	password, _ := u.User.Password()
	cmd := env.Command(t, ns, "db", "import", db, "--from", localURL, "-o", "json")
	cmd.Env = append(cmd.Env, "PATH="+bin+":"+os.Getenv("PATH"))
	r := testbed.RunCommand(t, cmd)
	if r.Code != 0 {
		t.Fatalf("import --from: exit %d\n%s", r.Code, r.Stderr)
	}
	if strings.Contains(r.Stdout+r.Stderr, password) {
		t.Errorf("the password is in the output:\n%s\n%s", r.Stdout, r.Stderr)
	}
	rec, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("the local pg_dump did not run: %v", err)
	}
	args, env2, _ := strings.Cut(string(rec), "PGPASSWORD=")
	if strings.Contains(args, password) || !strings.Contains(args, "--dbname=postgres://dev@127.0.0.1:") || strings.TrimSpace(env2) != password {
		t.Errorf("pg_dump ran with arguments %q and PGPASSWORD %q", args, strings.TrimSpace(env2))
	}
	if got := dataLines(fingerprint(t, env, ns, db)); got != want {
		t.Fatalf("the imported database differs from the local one:\n%s\nwant:\n%s", got, want)
	}
	if objs := owners(t, env, ns, db); len(objs) < 10 {
		t.Errorf("imported objects: %v", objs)
	}

	// A source newer than this machine's pg_dump: the test bed's database (17) through db run's
	// tunnel (the URL without a password: pg_dump takes PGPASSWORD from db run, as import
	// leaves the environment to it when the URL has none), against the local pg_dump (15).
	if v, err := exec.Command(realDump, "--version").Output(); err != nil || !strings.Contains(string(v), " 15.") {
		t.Fatalf("the test expects this machine's pg_dump 15 (Debian's, hack/testbed/deps.sh): %s %v", v, err)
	}
	before := fingerprint(t, env, ns, db)
	nested := env.Binary(t) + " --kubeconfig " + env.Kubeconfig + " -n " + ns + ` db import ` + db +
		` --from "postgres://$PGUSER@$PGHOST:$PGPORT/$PGDATABASE" --clean --yes`
	r = env.Run(t, ns, "db", "run", db, "--", "sh", "-c", nested)
	if r.Code != 1 || !strings.Contains(r.Stderr, "is older than the source server") || !strings.Contains(r.Stderr, "install pg_dump 17 or newer") {
		t.Errorf("import --from a newer server: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := fingerprint(t, env, ns, db); got != before {
		t.Errorf("a refused import --from changed the target")
	}

	// A wrong password: pg_dump's refusal, exit 1, nothing changed.
	bad := strings.Replace(localURL, password, "wrong", 1)
	r = env.Run(t, ns, "db", "import", db, "--from", bad, "--clean", "--yes")
	if r.Code != 1 || !strings.Contains(r.Stderr, "password authentication failed") {
		t.Errorf("import --from with a wrong password: exit %d\n%s", r.Code, r.Stderr)
	}
	if got := fingerprint(t, env, ns, db); got != before {
		t.Errorf("a failed import --from changed the target")
	}
}

// localPsql runs query in the local database at rawURL as its user (the password in PGPASSWORD).
func localPsql(rawURL, query string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	password, _ := u.User.Password()
	u.User = url.User(u.User.Username())
	cmd := exec.Command("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", u.String(), "-c", query)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%v: %s", err, stderr.String())
	}
	return strings.TrimSpace(out.String()), nil
}
