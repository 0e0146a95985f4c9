package testbed

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
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
)

// LocalPostgres is a PostgreSQL server on this machine, outside the cluster, as a developer's
// laptop has: Debian's server binaries (hack/testbed/deps.sh installs them), run as the postgres
// OS user, on 127.0.0.1 and a free port, with a password login. db pull, push and import --from
// move data between it and a database of the test bed.
type LocalPostgres struct {
	// URL is the login of its role "dev" (with the password) to its database "dev".
	URL string
	// Version is its major version.
	Version int
	t       testing.TB
	bin     string
	dir     string
	uid     uint32
	gid     uint32
	port    int
	server  *exec.Cmd
	exited  chan struct{}
}

// StartLocalPostgres starts a fresh LocalPostgres, stopped and removed when the test ends. It
// fails, never skips, without the server binaries.
func StartLocalPostgres(t testing.TB) *LocalPostgres {
	t.Helper()
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(m) == 0 {
		t.Fatal("PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin): apt-get install postgresql")
	}
	sort.Strings(m)
	l := &LocalPostgres{t: t, bin: filepath.Dir(m[len(m)-1])}
	l.Version, _ = strconv.Atoi(filepath.Base(filepath.Dir(l.bin)))
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("the postgres OS user is missing (apt-get install postgresql): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	l.uid, l.gid = uint32(uid), uint32(gid)
	// Under /var/tmp, which the postgres user can traverse.
	if l.dir, err = os.MkdirTemp("/var/tmp", "sb-localpg-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(l.dir) })
	if os.Getuid() == 0 {
		if err := os.Chown(l.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	password := hex.EncodeToString(b[:])
	pw := filepath.Join(l.dir, "pw")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		_ = os.Chown(pw, uid, gid)
	}
	pgdata := filepath.Join(l.dir, "pgdata")
	l.run(l.bin+"/initdb", "-D", pgdata, "-U", "postgres", "--pwfile", pw, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
	l.port = freeTCPPort(t)
	l.server = l.cmd(l.bin+"/postgres", "-D", pgdata, "-p", strconv.Itoa(l.port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+l.dir, "-c", "fsync=off")
	logf, err := os.Create(filepath.Join(l.dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	l.server.Stdout, l.server.Stderr = logf, logf
	if err := l.server.Start(); err != nil {
		t.Fatal(err)
	}
	l.exited = make(chan struct{})
	go func() { _ = l.server.Wait(); close(l.exited) }()
	t.Cleanup(l.stop)
	exited := l.exited
	// Ready when postmaster.pid says so (what pg_ctl -w watches).
	for deadline := time.Now().Add(time.Minute); ; {
		if b, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid")); err == nil {
			if lines := strings.Split(string(b), "\n"); len(lines) >= 8 && strings.TrimSpace(lines[7]) == "ready" {
				break
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(l.dir, "server.log"))
			t.Fatalf("the local PostgreSQL exited:\n%s", log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the local PostgreSQL did not start in a minute")
		}
	}
	// The password through psql's stdin, not its command line.
	psql := l.cmd(l.bin+"/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", l.dir, "-p", strconv.Itoa(l.port), "-U", "postgres", "-d", "postgres", "-f", "-")
	psql.Stdin = strings.NewReader(fmt.Sprintf("create role dev login password '%s';\n", password))
	if out, err := psql.CombinedOutput(); err != nil {
		t.Fatalf("create the local role: %v\n%s", err, out)
	}
	l.SQL("postgres", "create database dev owner dev")
	l.URL = fmt.Sprintf("postgres://dev:%s@127.0.0.1:%d/dev", password, l.port)
	return l
}

// SQL runs query as the superuser in database db (unaligned, tuples only) and returns its
// output without the surrounding space.
func (l *LocalPostgres) SQL(db, query string) string {
	l.t.Helper()
	return strings.TrimSpace(l.run(l.bin+"/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", l.dir, "-p", strconv.Itoa(l.port), "-U", "postgres", "-d", db, "-c", query))
}

func (l *LocalPostgres) cmd(argv ...string) *exec.Cmd {
	c := exec.Command(argv[0], argv[1:]...)
	c.Dir = l.dir
	c.Env = []string{"PATH=" + l.bin + ":/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + l.dir}
	if os.Getuid() == 0 {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: l.uid, Gid: l.gid}}
	}
	return c
}

func (l *LocalPostgres) run(argv ...string) string {
	l.t.Helper()
	out, err := l.cmd(argv...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func (l *LocalPostgres) stop() {
	if l.server == nil || l.server.Process == nil {
		return
	}
	_ = l.server.Process.Signal(syscall.SIGINT)
	select {
	case <-l.exited:
	case <-time.After(30 * time.Second):
		_ = l.server.Process.Kill()
		<-l.exited
	}
}

// freeTCPPort is a port of 127.0.0.1 that nothing listens on.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
