package testbed_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stackblaze/stackblaze/internal/testbed"
)

// TestE2ETestbedDownLeavesNothing brings up a second, throw-away test bed in its own directory
// (the shared one keeps serving the other tests), starts a database in it, brings it down, and
// checks that no process of it is left and none of its ports listens.
func TestE2ETestbedDownLeavesNothing(t *testing.T) {
	env := testbed.Require(t) // the binaries are built and the packages installed
	dir, err := os.MkdirTemp("", "sbtb-down-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// MkdirTemp makes a private directory; like a checkout in a home directory, the postgres
	// user cannot enter it, so up.sh puts the data elsewhere. Both places are checked below.
	state := filepath.Join(dir, "state")
	script := func(name string) {
		t.Helper()
		ctx := testbed.Context(t, 5*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(env.Root, "hack", "testbed", name))
		cmd.Env = append(os.Environ(), "STACKBLAZE_TESTBED_DIR="+state)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	t.Cleanup(func() {
		cmd := exec.Command("bash", filepath.Join(env.Root, "hack", "testbed", "down.sh"))
		cmd.Env = append(os.Environ(), "STACKBLAZE_TESTBED_DIR="+state)
		_ = cmd.Run()
	})
	script("up.sh")
	script("up.sh") // a second up is a no-op

	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(state, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	second := &testbed.Env{Root: env.Root, Kubeconfig: filepath.Join(state, "kubeconfig"), REST: cfg, Client: client}
	postgresStatefulSet(t, second, "default", "db", "pw")
	waitReady(t, second, "default", "db-0", "")

	dataRoot, err := os.ReadFile(filepath.Join(state, "data-root"))
	if err != nil {
		t.Fatal(err)
	}
	data := strings.TrimSpace(string(dataRoot))
	pids := processesOf(t, state, data)
	for _, want := range []string{"etcd", "kube-apiserver", "kube-controller" /* comm is cut at 15 bytes */, "kube-scheduler", "kwok-controller", "podrunner", "postgres"} {
		found := false
		for _, name := range pids {
			found = found || strings.HasPrefix(name, want)
		}
		if !found {
			t.Errorf("before down: no %s process of the second test bed (have %v)", want, pids)
		}
	}
	ports := listeningPorts(t, pids)
	if len(ports) < 4 {
		t.Fatalf("before down: expected the test bed's processes to listen on several ports, found %v", ports)
	}

	script("down.sh")

	if left := processesOf(t, state, data); len(left) > 0 {
		t.Errorf("after down, processes are left: %v", left)
	}
	for _, p := range ports {
		c, err := net.DialTimeout("tcp", p, time.Second)
		if err == nil {
			c.Close()
			t.Errorf("after down, %s still accepts connections", p)
		}
	}
	for _, d := range []string{state, data} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("after down, the state directory %s remains", d)
		}
	}
}

// processesOf returns pid -> command name of every process whose command line names one of dirs.
func processesOf(t *testing.T, dirs ...string) map[int]string {
	t.Helper()
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		match := false
		for _, dir := range dirs {
			match = match || bytes.Contains(cmdline, []byte(dir+"/"))
		}
		if !match {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		out[pid] = strings.TrimSpace(string(comm))
	}
	return out
}

var ssLine = regexp.MustCompile(`\s(\S+):(\d+)\s.*pid=(\d+)`)

// listeningPorts returns the TCP addresses that the given processes listen on, from ss.
func listeningPorts(t *testing.T, pids map[int]string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ss", "-ltnpH").Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	var addrs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		for _, m := range regexp.MustCompile(`pid=(\d+)`).FindAllStringSubmatch(sc.Text(), -1) {
			var pid int
			fmt.Sscanf(m[1], "%d", &pid)
			if _, ok := pids[pid]; !ok {
				continue
			}
			if f := ssLine.FindStringSubmatch(sc.Text()); f != nil {
				host := strings.Trim(f[1], "[]")
				if host == "*" || host == "0.0.0.0" || host == "::" {
					host = "127.0.0.1"
				}
				addrs = append(addrs, net.JoinHostPort(host, f[2]))
			}
			break
		}
	}
	return addrs
}
