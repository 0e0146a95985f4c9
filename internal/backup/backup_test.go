package backup

import (
	"strings"
	"testing"
	"time"
)

func TestOptionsAndEnv(t *testing.T) {
	c := Config{Stanza: "mydb", PGDataPath: "/var/lib/postgresql/data/pgdata", RepoPath: "/var/lib/postgresql/backup/repo", LockPath: "/var/lib/postgresql/backup/lock"}
	env := map[string]string{}
	for _, e := range c.Env() {
		env[e.Name] = e.Value
	}
	for k, v := range map[string]string{
		"PGBACKREST_STANZA": "mydb", "PGBACKREST_REPO1_PATH": "/var/lib/postgresql/backup/repo",
		"PGBACKREST_REPO1_RETENTION_FULL_TYPE": "time", "PGBACKREST_REPO1_RETENTION_FULL": "7",
		"PGBACKREST_PG1_PATH": "/var/lib/postgresql/data/pgdata",
	} {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["PGBACKREST_REPO1_TYPE"]; ok {
		t.Error("repo1-type set without S3")
	}
	c.RepoPath = "/ns"
	c.S3 = &S3{Bucket: "b", Endpoint: "s3.example", Region: "eu", SecretName: "s3creds"}
	var secretRefs int
	for _, e := range c.Env() {
		if e.SecretName == "s3creds" {
			secretRefs++
		}
		if e.Name == "PGBACKREST_REPO1_PATH" && e.Value != "/ns" {
			t.Errorf("S3 repo path %q", e.Value)
		}
	}
	if secretRefs != 2 {
		t.Errorf("want key and secret from the Secret, got %d references", secretRefs)
	}
	f := c.File()
	if !strings.Contains(f, "[mydb]\npg1-path=/var/lib/postgresql/data/pgdata") || !strings.Contains(f, "repo1-type=s3") {
		t.Errorf("conf:\n%s", f)
	}
}

func TestServerSettings(t *testing.T) {
	c := Config{Stanza: "mydb"}
	if got := strings.Join(c.ServerSettings(true), "|"); !strings.Contains(got, "archive_timeout=300") || !strings.Contains(got, `--stanza=mydb`) || !strings.Contains(got, `archive-push "%p"`) {
		t.Errorf("pitr: %s", got)
	}
	if got := strings.Join(c.ServerSettings(false), "|"); strings.Contains(got, "archive_timeout") || !strings.Contains(got, "archive_mode=on") {
		t.Errorf("no pitr: %s", got)
	}
}

func TestParseInfo(t *testing.T) {
	data := `[{"name":"mydb","status":{"code":0,"message":"ok"},
	  "archive":[{"id":"16-1","min":"000000010000000000000003","max":"000000010000000000000009"}],
	  "backup":[
	   {"label":"20260124-101500F_20260125-101500D","type":"diff","error":false,"timestamp":{"start":1769336100,"stop":1769336110},"info":{"size":200,"repository":{"size":50,"delta":10}}},
	   {"label":"20260124-101500F","type":"full","timestamp":{"start":1769249700,"stop":1769249720},"info":{"size":100,"repository":{"size":40,"delta":40}}}]},
	 {"name":"other","status":{"code":1,"message":"missing stanza path"}}]`
	r, err := ParseInfo([]byte(data), "mydb")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.IDs(), ","); got != "20260124-101500F,20260124-101500F_20260125-101500D" {
		t.Fatalf("ids %s", got)
	}
	if r.Backups[0].Size != 100 || r.Backups[0].RepoSize != 40 || r.Backups[0].Stop != time.Unix(1769249720, 0).UTC() {
		t.Errorf("backup %+v", r.Backups[0])
	}
	if r.ArchiveMin != "000000010000000000000003" || r.ArchiveMax != "000000010000000000000009" {
		t.Errorf("archive %s %s", r.ArchiveMin, r.ArchiveMax)
	}
	last := time.Unix(1769340000, 0)
	w, ok := r.Window(last)
	if !ok || !w.Earliest.Equal(time.Unix(1769249721, 0)) || !w.Latest.Equal(last) { // the second after the stop second
		t.Errorf("window %v", w)
	}
	if w.Contains(time.Unix(1769249000, 0)) || !w.Contains(time.Unix(1769300000, 0)) {
		t.Error("Contains")
	}
	empty, err := ParseInfo([]byte(`[{"name":"mydb","status":{"code":1,"message":"missing stanza path"},"backup":[],"archive":[]}]`), "mydb")
	if err != nil || len(empty.Backups) != 0 {
		t.Fatalf("empty: %v %v", empty, err)
	}
	if _, ok := empty.Window(last); ok {
		t.Error("window without backups")
	}
}

func TestParseTarget(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-11-24T10:15:00Z":      time.Date(2026, 11, 24, 10, 15, 0, 0, time.UTC),
		"2026-11-24T11:15:00+01:00": time.Date(2026, 11, 24, 10, 15, 0, 0, time.UTC),
		"2h":                        now.Add(-2 * time.Hour),
		"1h30m":                     now.Add(-90 * time.Minute),
		"1d":                        now.Add(-24 * time.Hour),
		"1d2h":                      now.Add(-26 * time.Hour),
	} {
		got, err := ParseTarget(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-2h", "0s", "2026-11-24 10:15"} {
		if _, err := ParseTarget(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCommands(t *testing.T) {
	ts := time.Date(2026, 11, 24, 10, 15, 0, 123000, time.UTC)
	got := strings.Join(RestoreTime(ts), " ")
	if !strings.Contains(got, "--type=time --target=2026-11-24 10:15:00.000123+00 --target-action=promote") {
		t.Error(got)
	}
	got = strings.Join(Config{Stanza: "x"}.RestoreInPod(RestoreBackup("20260124-101500F")), " ")
	if !strings.Contains(got, `--set=20260124-101500F --type=immediate`) || !strings.Contains(got, `--pg1-path="$S"`) {
		t.Error(got)
	}
	if Shell([]string{"a b", "it's"}) != `'a b' 'it'"'"'s'` {
		t.Error(Shell([]string{"a b", "it's"}))
	}
}

// After a major version upgrade (stanza-upgrade) the stanza has a db entry per cluster: backups of
// an earlier one are listed with their major and not Current, and the window starts at the
// current cluster's first backup. A revert to the first cluster (same major and system id, a new
// entry) makes its backups current again.
func TestParseInfoAcrossAnUpgrade(t *testing.T) {
	data := `[{"name":"mydb","status":{"code":0,"message":"ok"},
	  "db":[{"id":1,"system-id":111,"version":"15"},{"id":2,"system-id":222,"version":"17"}],
	  "backup":[
	   {"label":"20260124-101500F","type":"full","database":{"id":1},"timestamp":{"start":100,"stop":110},"info":{}},
	   {"label":"20260125-101500F","type":"full","database":{"id":2},"timestamp":{"start":200,"stop":210},"info":{}}]}]`
	r, err := ParseInfo([]byte(data), "mydb")
	if err != nil {
		t.Fatal(err)
	}
	if b := r.Backups; b[0].PostgresVersion != "15" || b[0].Current || b[1].PostgresVersion != "17" || !b[1].Current {
		t.Fatalf("backups %+v", b)
	}
	if w, ok := r.Window(time.Unix(300, 0)); !ok || !w.Earliest.Equal(time.Unix(211, 0)) {
		t.Errorf("window %v: it must start at the 17 backup", w)
	}
	reverted := strings.Replace(data, `{"id":2,"system-id":222,"version":"17"}]`, `{"id":2,"system-id":222,"version":"17"},{"id":3,"system-id":111,"version":"15"}]`, 1)
	r, err = ParseInfo([]byte(reverted), "mydb")
	if err != nil {
		t.Fatal(err)
	}
	if b := r.Backups; !b[0].Current || b[1].Current {
		t.Errorf("after a revert to 15: %+v", b)
	}
}
