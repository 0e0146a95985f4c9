package backup_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stackblaze/stackblaze/internal/backup"
)

// These tests run real PostgreSQL and real pgBackRest on loopback with exactly the settings,
// environment and command lines the database container gets. They need the postgresql and
// pgbackrest packages (hack/testbed/deps.sh installs them) and fail, never skip, without them.

type local struct {
	t      *testing.T
	dir    string
	cfg    backup.Config
	uid    uint32
	gid    uint32
	bin    string
	server *exec.Cmd
	port   int
	pgdata string
	sock   string
}

func pgBin(t *testing.T) string {
	t.Helper()
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(m) == 0 {
		t.Fatal("PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin): apt-get install postgresql")
	}
	sort.Strings(m)
	return filepath.Dir(m[len(m)-1])
}

func newLocal(t *testing.T, stanza string) *local {
	t.Helper()
	if _, err := exec.LookPath("pgbackrest"); err != nil {
		t.Fatal("pgbackrest is not installed: apt-get install pgbackrest")
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("the postgres OS user is missing (apt-get install postgresql): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// Under /var/tmp, which the postgres user can traverse (t.TempDir may be under a private home).
	dir, err := os.MkdirTemp("/var/tmp", "sb-backup-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{dir, dir + "/sock"} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if os.Getuid() == 0 {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	l := &local{t: t, dir: dir, uid: uint32(uid), gid: uint32(gid), bin: pgBin(t), pgdata: dir + "/pgdata", sock: dir + "/sock", port: 5432}
	// The layout of the database's two volumes: PGDATA on one, the repository and the lock
	// files on the other.
	l.cfg = backup.Config{Stanza: stanza, PGDataPath: l.pgdata, RepoPath: dir + "/backup/repo", LockPath: dir + "/backup/lock"}
	l.run(nil, l.bin+"/initdb", "-D", l.pgdata, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	l.server, l.port = l.start(l.pgdata, l.sock)
	t.Cleanup(func() { l.stop(l.server) })
	return l
}

// env is the container's environment: the generated PGBACKREST_* variables (the server inherits
// them, as in the container) plus what an exec in the container has (PGHOST, PGPORT, PGDATA).
func (l *local) env(extra ...string) []string {
	env := []string{"PATH=" + l.bin + ":/usr/bin:/bin", "HOME=" + l.dir, "LANG=C.UTF-8",
		"PGHOST=" + l.sock, "PGPORT=" + strconv.Itoa(l.port), "PGDATA=" + l.pgdata, "PGUSER=postgres", "PGDATABASE=postgres"}
	env = append(env, l.cfg.Environ()...)
	return append(env, extra...)
}

func (l *local) cmd(env []string, argv ...string) *exec.Cmd {
	c := exec.Command(argv[0], argv[1:]...)
	c.Env = env
	if env == nil {
		c.Env = l.env()
	}
	c.Dir = l.dir
	if os.Getuid() == 0 {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: l.uid, Gid: l.gid}}
	}
	return c
}

func (l *local) run(env []string, argv ...string) string {
	l.t.Helper()
	var out, errb bytes.Buffer
	c := l.cmd(env, argv...)
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		l.t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", strings.Join(argv, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// start runs postgres on dataDir with the settings the StatefulSet passes as -c arguments, and
// waits until postmaster.pid says "ready" (what pg_ctl -w watches).
func (l *local) start(dataDir, sock string, extraEnv ...string) (*exec.Cmd, int) {
	l.t.Helper()
	port := freePort(l.t)
	args := []string{"-D", dataDir, "-p", strconv.Itoa(port), "-c", "listen_addresses=", "-c", "unix_socket_directories=" + sock}
	for _, s := range l.cfg.ServerSettings(true) {
		args = append(args, "-c", s)
	}
	env := l.env(extraEnv...)
	c := l.cmd(env, append([]string{l.bin + "/postgres"}, args...)...)
	c.Dir = dataDir
	logf, err := os.Create(dataDir + ".log")
	if err != nil {
		l.t.Fatal(err)
	}
	c.Stdout, c.Stderr = logf, logf
	if err := c.Start(); err != nil {
		l.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	deadline := time.After(60 * time.Second)
	for {
		if b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid")); err == nil {
			lines := strings.Split(string(b), "\n")
			if len(lines) >= 8 && strings.TrimSpace(lines[7]) == "ready" {
				return c, port
			}
		}
		select {
		case <-done:
			log, _ := os.ReadFile(dataDir + ".log")
			l.t.Fatalf("postgres on %s exited:\n%s", dataDir, log)
		case <-deadline:
			l.t.Fatalf("postgres on %s did not start", dataDir)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (l *local) stop(c *exec.Cmd) {
	if c == nil || c.Process == nil {
		return
	}
	_ = c.Process.Signal(syscall.SIGINT)
	for i := 0; i < 600 && syscall.Kill(c.Process.Pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	// A Unix socket only (listen_addresses is empty): any number not used by another test's
	// socket in the same directory works, and each server has its own directory.
	return 5432
}

func (l *local) psql(sock string, port int, sql string) string {
	l.t.Helper()
	return strings.TrimSpace(l.run(nil, l.bin+"/psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", sock, "-p", strconv.Itoa(port), "-d", "postgres", "-c", sql))
}

// pgbackrest runs one generated command line exactly as the container runs it (InPod).
func (l *local) pgbackrest(argv []string, extraEnv ...string) string {
	l.t.Helper()
	return l.run(l.env(extraEnv...), l.cfg.InPod(argv)...)
}

func (l *local) info() *backup.Repository {
	l.t.Helper()
	r, err := backup.ParseInfo([]byte(l.pgbackrest(backup.InfoCmd())), l.cfg.Stanza)
	if err != nil {
		l.t.Fatal(err)
	}
	return r
}

// waitArchived forces a WAL switch and waits until the archiver has pushed that segment.
func (l *local) switchAndWaitArchived() {
	l.t.Helper()
	seg := l.psql(l.sock, l.port, "select pg_walfile_name(pg_switch_wal())")
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := l.psql(l.sock, l.port, "select coalesce(last_archived_wal, '') from pg_stat_archiver")
		if got >= seg && got != "" {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("segment %s not archived within 60s (last archived %q)", seg, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restoreAndCount restores with a generated restore command into a new directory (as the pod
// does beside PGDATA), starts PostgreSQL on it, waits for recovery to end and returns the rows.
func (l *local) restoreAndCount(restore []string, name string) string {
	l.t.Helper()
	target := filepath.Join(l.dir, name)
	// RestoreInPod writes into "$PGDATA.restore": point PGDATA at the new directory's base name.
	l.run(l.env("PGDATA="+target), l.cfg.RestoreInPod(restore)...)
	staged := target + backup.StagingSuffix
	sock := filepath.Join(l.dir, name+"-sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		l.t.Fatal(err)
	}
	_ = os.Chown(sock, int(l.uid), int(l.gid))
	srv, port := l.start(staged, sock)
	defer l.stop(srv)
	deadline := time.Now().Add(120 * time.Second)
	for l.psql(sock, port, "select pg_is_in_recovery()") != "f" {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(staged + ".log")
			l.t.Fatalf("restored server still in recovery after 120s:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return l.psql(sock, port, "select count(*) || ':' || coalesce(min(i), 0) || '-' || coalesce(max(i), 0) from t")
}

func TestE2EBackupPointInTimeAndBackupIDRestore(t *testing.T) {
	l := newLocal(t, "pitrdb")
	l.pgbackrest(backup.StanzaCreate())
	l.psql(l.sock, l.port, "create table t (i int primary key)")
	l.psql(l.sock, l.port, "insert into t select generate_series(1, 10)")
	l.pgbackrest(backup.BackupCmd(backup.TypeFull))
	repo := l.info()
	if len(repo.Backups) != 1 || repo.Backups[0].Type != "full" || repo.Backups[0].Size == 0 {
		t.Fatalf("after one full backup: %+v", repo.Backups)
	}
	first := repo.Backups[0]

	// The earliest time a backup can be restored to is the second after its stop second (see
	// Window): let the clock get there, so that T is inside the window.
	if d := time.Until(first.Stop.Add(1100 * time.Millisecond)); d > 0 {
		time.Sleep(d)
	}
	l.psql(l.sock, l.port, "insert into t select generate_series(11, 20)")
	// T: taken by the server's clock after rows 11..20 committed and before 21..30 are inserted.
	ts := l.psql(l.sock, l.port, "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
	T, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t.Fatal(err)
	}
	l.psql(l.sock, l.port, "insert into t select generate_series(21, 30)")
	l.switchAndWaitArchived()

	last, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(l.run(nil, backup.LastArchived()...)))
	if err != nil {
		t.Fatalf("last archived time: %v", err)
	}
	w, ok := l.info().Window(last)
	if !ok || !w.Contains(T) || !w.Earliest.Equal(first.Stop.Add(time.Second)) {
		t.Fatalf("window %v (ok %v) should start at the backup's end %v and contain T %v", w, ok, first.Stop, T)
	}

	if got := l.restoreAndCount(backup.RestoreTime(T), "pitr"); got != "20:1-20" {
		t.Fatalf("restore to T %s: rows %s, want exactly 1..20 (the ones committed before T)", backup.FormatTarget(T), got)
	}
	if got := l.restoreAndCount(backup.RestoreBackup(first.ID), "byid"); got != "10:1-10" {
		t.Fatalf("restore of backup %s: rows %s, want exactly 1..10 (what it held)", first.ID, got)
	}
	// The original is untouched and keeps archiving.
	if got := l.psql(l.sock, l.port, "select count(*) from t"); got != "30" {
		t.Fatalf("original has %s rows, want 30", got)
	}
}

// TestE2EBackupRetentionExpiresOldBackups backdates backups with libfaketime: real pgbackrest
// takes real backups of a real server, only its clock (and so the labels and timestamps it
// writes into backup.info and the manifests) is moved back. Rewriting backup.info by hand would
// need its checksum recomputed in pgBackRest's own format; the clock is the honest lever.
func TestE2EBackupRetentionExpiresOldBackups(t *testing.T) {
	lib := "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
	if m, _ := filepath.Glob("/usr/lib/*/faketime/libfaketime.so.1"); len(m) > 0 {
		lib = m[0]
	} else {
		t.Fatal("libfaketime is not installed: apt-get install libfaketime")
	}
	l := newLocal(t, "retdb")
	l.pgbackrest(backup.StanzaCreate())
	l.psql(l.sock, l.port, "create table t (i int)")
	var ids []string
	backupAt := func(ago string) {
		// pgBackRest takes a backup's timestamps from the server's clock, so the server runs
		// under the moved clock too; the clock only ever moves forward between backups.
		extra := []string{}
		if ago != "" {
			extra = []string{"LD_PRELOAD=" + lib, "FAKETIME=" + ago}
		}
		l.stop(l.server)
		l.server, l.port = l.start(l.pgdata, l.sock, extra...)
		l.psql(l.sock, l.port, "insert into t values (1)")
		l.pgbackrest(backup.BackupCmd(backup.TypeFull), extra...)
		b, _ := l.info().Latest()
		ids = append(ids, b.ID)
	}
	backupAt("-10d")
	backupAt("-9d")
	before := l.info()
	if fmt.Sprint(before.IDs()) != fmt.Sprint(ids) {
		t.Fatalf("want backups %v before expire, got %v", ids, before.IDs())
	}
	age := time.Since(before.Backups[0].Stop)
	if age < 9*24*time.Hour || age > 11*24*time.Hour {
		t.Fatalf("oldest backup %s is %s old, want about 10 days (faketime not applied?)", before.Backups[0].ID, age)
	}
	// Back on the real clock. Both backups are older than 7 days: the 10-day-old one expires;
	// pgBackRest keeps the newest of them (9 days), because restoring to any time in the last 7
	// days needs a backup from before that time, until a newer backup takes its place.
	l.stop(l.server)
	l.server, l.port = l.start(l.pgdata, l.sock)
	l.pgbackrest(backup.ExpireCmd())
	if got := l.info().IDs(); fmt.Sprint(got) != fmt.Sprint(ids[1:]) {
		t.Fatalf("after expire: %v, want %v (the 10-day-old %s expired)", got, ids[1:], ids[0])
	}
	if _, err := os.Stat(filepath.Join(l.cfg.RepoPath, "backup", l.cfg.Stanza, ids[0])); !os.IsNotExist(err) {
		t.Fatalf("expired backup %s still on disk (stat: %v)", ids[0], err)
	}
	// Every backup applies the retention when it ends: today's backup keeps the 9-day-old
	// one (still the newest backup older than 7 days) and itself.
	backupAt("")
	if got := l.info().IDs(); fmt.Sprint(got) != fmt.Sprint(ids[1:]) {
		t.Fatalf("after today's backup: %v, want %v", got, ids[1:])
	}
}

// The way back of an in-place restore (UnswapInPod), with a real server running on the restored
// data, as after a container restart: the server is stopped before it can write anything by
// PGDATA's path into the original data put back there, so that the original starts as it was.
// Without the stop, the pod's deletion would shut that server down normally, and its shutdown
// checkpoint would write its control file into the original's directory.
func TestE2EUnswapStopsTheServerOnTheRestoredData(t *testing.T) {
	l := newLocal(t, "db")
	l.psql(l.sock, l.port, "create table original (i int); insert into original values (1), (2)")
	l.stop(l.server)
	l.server = nil
	const stamp = "20261124000000"
	old := l.pgdata + ".old-" + stamp
	if err := os.Rename(l.pgdata, old); err != nil {
		t.Fatal(err)
	}
	control := func() []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(l.pgdata, "global", "pg_control"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	oldControl, err := os.ReadFile(filepath.Join(old, "global", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}

	// The "restored" data, with a server on it that has work to write.
	l.run(nil, l.bin+"/initdb", "-D", l.pgdata, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	restored, port := l.start(l.pgdata, l.sock)
	defer l.stop(restored)
	l.psql(l.sock, port, "create table restored (i int); insert into restored select generate_series(1, 1000)")

	l.run(l.env("PGPORT="+strconv.Itoa(port)), backup.UnswapInPod(stamp)...)
	// The restored server is gone, and the pod's deletion (a normal shutdown) finds none.
	if syscall.Kill(restored.Process.Pid, 0) == nil {
		l.stop(restored)
		t.Error("the server on the restored data was still running after the way back")
	}
	if _, err := os.Stat(l.pgdata + ".failed/PG_VERSION"); err != nil {
		t.Errorf("the restored data was not kept aside as .failed: %v", err)
	}
	if !bytes.Equal(control(), oldControl) {
		t.Fatal("the original data's control file changed: a server wrote into it by PGDATA's path")
	}
	// The original starts on its own data.
	srv, port := l.start(l.pgdata, l.sock)
	defer l.stop(srv)
	if got := l.psql(l.sock, port, "select count(*) from original"); got != "2" {
		t.Fatalf("the original after the way back: %s rows, want 2", got)
	}
}
