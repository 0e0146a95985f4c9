package testbed_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

func mustExec(t *testing.T, env *testbed.Env, ns, pod string, argv ...string) string {
	t.Helper()
	return env.MustExec(t, ns, pod, argv...)
}

// createDatabase runs `stackblaze db create` and fails the test unless it succeeds.
func createDatabase(t *testing.T, env *testbed.Env, ns, name string, args ...string) {
	t.Helper()
	r := env.Run(t, ns, append([]string{"db", "create", name, "--timeout", "3m"}, args...)...)
	if r.Code != 0 {
		t.Fatalf("db create %s: exit %d\n%s", name, r.Code, r.Stderr)
	}
}

// statusField reads "Name: value" from /proc/PID/status text.
func statusField(status, name string) string {
	for _, line := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestE2EDatabaseContainerFromInside reads the running database container of `db create` from
// inside: the kubelet and the runtime really applied what the pod spec asks for, and the image is
// ours. Then it makes the server stop answering: the readiness probe that the kubelet executes
// takes the pod out of Ready, and back in when the server answers again.
func TestE2EDatabaseContainerFromInside(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	createDatabase(t, env, ns, "inside")
	pod := database.PodName("inside")

	status := mustExec(t, env, ns, pod, "cat", "/proc/1/status")
	if f := strings.Fields(statusField(status, "Uid")); len(f) != 4 || f[0] != "999" || f[1] != "999" {
		t.Errorf("PID 1 runs as uid %q, want 999", statusField(status, "Uid"))
	}
	if got := statusField(status, "CapEff"); got != "0000000000000000" {
		t.Errorf("effective capabilities %s, want none", got)
	}
	if got := statusField(status, "NoNewPrivs"); got != "1" {
		t.Errorf("NoNewPrivs %s, want 1", got)
	}
	if got := statusField(status, "Seccomp"); got != "2" {
		t.Errorf("Seccomp mode %s, want 2 (a filter)", got)
	}
	if got := strings.TrimSpace(mustExec(t, env, ns, pod, "cat", "/proc/1/comm")); got != "postgres" {
		t.Errorf("PID 1 is %q, want postgres (the entrypoint execs it, so that the stop signal reaches it)", got)
	}

	// PGDATA is a subdirectory of the volume, which is a mount of its own.
	mounts := mustExec(t, env, ns, pod, "cat", "/proc/self/mountinfo")
	if !regexp.MustCompile(`(?m)^\S+ \S+ \S+ \S+ ` + regexp.QuoteMeta(database.DataMountPath) + ` `).MatchString(mounts) {
		t.Errorf("%s is not a mount point in the container", database.DataMountPath)
	}
	if out := mustExec(t, env, ns, pod, "sh", "-c", `echo "$PGDATA"; cat "$PGDATA/PG_VERSION"; stat -c %u "$PGDATA"`); strings.Fields(out)[0] != database.PGDATA ||
		strings.Fields(out)[1] != "17" || strings.Fields(out)[2] != "999" {
		t.Errorf("PGDATA, its PG_VERSION and owner: %q, want %s, 17, 999", out, database.PGDATA)
	}

	// /dev/shm is the plan's size (hobby: 128Mi).
	df := strings.Fields(strings.Split(strings.TrimSpace(mustExec(t, env, ns, pod, "df", "-k", "/dev/shm")), "\n")[1])
	if df[1] != strconv.Itoa(128*1024) {
		t.Errorf("/dev/shm is %s KiB, want %d (the hobby plan's 128Mi)", df[1], 128*1024)
	}
	if out := mustExec(t, env, ns, pod, "pgbackrest", "version"); !strings.HasPrefix(out, "pgBackRest ") {
		t.Errorf("pgbackrest version: %q", out)
	}

	// The readiness probe is executed by the kubelet: a server that stops answering (its
	// postmaster stopped, from this machine: inside the container PID 1 ignores SIGSTOP) goes
	// NotReady; once it answers again the pod is Ready again.
	ctx := testbed.Context(t, 2*time.Minute)
	running, err := env.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	postmaster := strconv.Itoa(postmasterHostPID(t, running))
	if out, err := exec.Command("kill", "-STOP", postmaster).CombinedOutput(); err != nil {
		t.Fatalf("stop the postmaster: %v %s", err, out)
	}
	stopped := true
	t.Cleanup(func() {
		if stopped {
			_ = exec.Command("kill", "-CONT", postmaster).Run()
		}
	})
	if _, err := testbed.WaitPod(ctx, env.Client, ns, pod, func(p *corev1.Pod) bool { return p != nil && !kube.PodReady(p) }); err != nil {
		t.Fatalf("the pod stayed Ready while its server did not answer: %v", err)
	}
	if out, err := exec.Command("kill", "-CONT", postmaster).CombinedOutput(); err != nil {
		t.Fatalf("continue the postmaster: %v %s", err, out)
	}
	stopped = false
	p, err := testbed.WaitPod(ctx, env.Client, ns, pod, func(p *corev1.Pod) bool { return p != nil && kube.PodReady(p) })
	if err != nil {
		t.Fatalf("the pod did not become Ready again: %v", err)
	}
	if p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("the container was restarted (%d): the readiness probe alone should have acted", p.Status.ContainerStatuses[0].RestartCount)
	}
}

// postmasterHostPID finds, from this machine, the host PID of the container's PID 1 (the
// postmaster): the process of the container's cgroup whose PID in its own namespace is 1.
func postmasterHostPID(t *testing.T, p *corev1.Pod) int {
	t.Helper()
	id := p.Status.ContainerStatuses[0].ContainerID
	_, id, _ = strings.Cut(id, "://")
	if id == "" {
		t.Fatalf("pod %s has no container ID", p.Name)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, f := range procs {
		data, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(data, []byte(id)) {
			continue
		}
		dir := filepath.Dir(f)
		status, err := os.ReadFile(filepath.Join(dir, "status"))
		if err != nil {
			continue
		}
		if ns := strings.Fields(statusField(string(status), "NSpid")); len(ns) == 2 && ns[1] == "1" {
			pid, _ := strconv.Atoi(filepath.Base(dir))
			return pid
		}
	}
	t.Fatalf("no process of container %s is its PID 1", id)
	return 0
}

// TestE2EKilledPostgresIsRestarted kills the postmaster from outside the container, as the
// kernel's OOM killer would: the kubelet restarts the container, `db status` shows the restart
// and the data is intact. Deleting the pod, and scaling to 0 and back, keep it too.
func TestE2EKilledPostgresIsRestarted(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	createDatabase(t, env, ns, "phoenix")
	pod := database.PodName("phoenix")
	psql := func(sql string) string {
		t.Helper()
		return strings.TrimSpace(mustExec(t, env, ns, pod, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", "phoenix", "-c", sql))
	}
	psql("CREATE TABLE marker (v int); INSERT INTO marker SELECT generate_series(1, 1000)")
	rowsOK := func(when string) {
		t.Helper()
		if got := psql("SELECT count(*) || ',' || sum(v) FROM marker"); got != "1000,500500" {
			t.Fatalf("%s: count,sum = %s, want 1000,500500", when, got)
		}
	}

	ctx := testbed.Context(t, 5*time.Minute)
	p, err := env.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pid := postmasterHostPID(t, p)
	if err := exec.Command("kill", "-KILL", strconv.Itoa(pid)).Run(); err != nil {
		t.Fatalf("kill the postmaster (host pid %d): %v", pid, err)
	}
	p, err = testbed.WaitPod(ctx, env.Client, ns, pod, func(p *corev1.Pod) bool {
		return p != nil && kube.PodReady(p) && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	if err != nil {
		t.Fatalf("the kubelet did not restart the killed database: %v", err)
	}
	if r := env.Run(t, ns, "db", "status", "phoenix"); r.Code != 0 || !strings.Contains(r.Stdout, "1 restarts") {
		t.Errorf("db status after the restart (exit %d) does not show it:\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	rowsOK("after the kill")

	if err := env.Client.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	uid := p.UID
	if _, err := testbed.WaitPod(ctx, env.Client, ns, pod, func(p *corev1.Pod) bool { return p != nil && p.UID != uid && kube.PodReady(p) }); err != nil {
		t.Fatal(err)
	}
	rowsOK("after the pod was deleted")

	for _, n := range []string{"0", "1"} {
		if r := env.Run(t, ns, "db", "scale", "phoenix", "--replicas", n); r.Code != 0 {
			t.Fatalf("db scale --replicas %s: exit %d\n%s", n, r.Code, r.Stderr)
		}
	}
	if _, err := testbed.WaitPod(ctx, env.Client, ns, pod, func(p *corev1.Pod) bool { return p != nil && kube.PodReady(p) }); err != nil {
		t.Fatal(err)
	}
	rowsOK("after scaling to 0 and back")
}

// routedListener makes a host that this machine routes to, as it would route to one off the
// machine: a network namespace of the test's own (held by an unshare process), joined to this
// machine by a veth pair, with the address 198.51.100.2 and a TCP listener (python3) behind it.
// A pod's packet to it goes through the FORWARD path. It returns the address, the port and
// whether the listener has accepted a connection.
func routedListener(t *testing.T) (string, int, func() bool) {
	t.Helper()
	const addr, link = "198.51.100.2", "sbtb-fwd0"
	holder := exec.Command("unshare", "--net", "--", "sleep", "600")
	if err := holder.Start(); err != nil {
		t.Fatalf("a network namespace for the routed host: %v", err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	pid := strconv.Itoa(holder.Process.Pid)
	// unshare has made the namespace once the process runs sleep.
	for i := 0; ; i++ {
		if comm, _ := os.ReadFile("/proc/" + pid + "/comm"); strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if i > 100 {
			t.Fatal("unshare did not start sleep in a new network namespace")
		}
		time.Sleep(20 * time.Millisecond)
	}
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	_ = exec.Command("ip", "link", "del", link).Run()
	sh("ip", "link", "add", link, "type", "veth", "peer", "name", link+"p", "netns", pid)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", link).Run() })
	sh("ip", "link", "set", link, "up")
	sh("ip", "route", "add", addr+"/32", "dev", link)
	in := []string{"nsenter", "-t", pid, "-n", "--"} // in[1:] are nsenter's arguments
	sh(append(in, "ip", "link", "set", "lo", "up")...)
	sh(append(in, "ip", "addr", "add", addr+"/32", "dev", link+"p")...)
	sh(append(in, "ip", "link", "set", link+"p", "up")...)
	sh(append(in, "ip", "route", "add", "default", "dev", link+"p")...)

	const serve = `
import socket
s = socket.socket()
s.bind(("` + addr + `", 0))
s.listen()
print(s.getsockname()[1])
while True:
    c, _ = s.accept()
    print("accepted")
    c.close()
`
	listener := exec.Command("nsenter", append(in[1:], "python3", "-u", "-c", serve)...)
	stdout, _ := listener.StdoutPipe()
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = listener.Process.Kill(); _ = listener.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatal("the routed host's listener printed no port")
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines.Text()))
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Bool
	go func() {
		for lines.Scan() {
			if lines.Text() == "accepted" {
				accepted.Store(true)
			}
		}
	}()
	return addr, port, accepted.Load
}

// dropCounter reads the packet count of the test bed's drop rule (hack/testbed/node.sh).
func dropCounter(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("iptables", "-t", "mangle", "-L", "STACKBLAZE-TESTBED", "-v", "-x", "-n").Output()
	if err != nil {
		t.Fatalf("read the test bed's drop rule: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 2 && f[2] == "DROP" {
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	t.Fatalf("the chain STACKBLAZE-TESTBED has no DROP rule:\n%s", out)
	return 0
}

// TestE2EPodsCannotLeaveTheMachine proves the test bed's drop rule without sending anything off
// this machine: an address the pod network must not reach (198.51.100.1, a documentation range)
// is put on a local interface (one end of a veth pair of the test's own; kernels without dummy
// interfaces have veth) with a listener behind it. A pod's attempt to reach it gets nothing, the
// listener sees nothing, and the rule's counter shows the drop; the same pod reaches the API
// server through its Service, so the network itself works.
func TestE2EPodsCannotLeaveTheMachine(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	const link, addr = "sbtb-probe0", "198.51.100.1"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	_ = exec.Command("ip", "link", "del", link).Run()
	run("link", "add", link, "type", "veth", "peer", "name", link+"p")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", link).Run() })
	run("addr", "add", addr+"/32", "dev", link)
	run("link", "set", link, "up")
	run("link", "set", link+"p", "up")
	ln, err := net.Listen("tcp4", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	routed, routedPort, routedAccepted := routedListener(t)
	before := dropCounter(t)

	script := fmt.Sprintf(`probe() { if timeout 5 bash -c "echo > /dev/tcp/$1/$2" 2>/dev/null; then echo "$1 reached"; else echo "$1 unreachable"; fi; }
probe %s %d
probe %s %d
probe "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT"`, addr, port, routed, routedPort)
	ctx := testbed.Context(t, 3*time.Minute)
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec: corev1.PodSpec{
			RestartPolicy:   corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](999), RunAsNonRoot: ptr.To(true)},
			Containers: []corev1.Container{{
				Name: "probe", Image: database.DefaultImageRepository + ":17", ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"bash", "-c", script},
			}},
		},
	}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := testbed.WaitPod(ctx, env.Client, ns, "probe", func(p *corev1.Pod) bool {
		return p != nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed)
	}); err != nil {
		t.Fatal(err)
	}
	logs, err := env.Client.CoreV1().Pods(ns).GetLogs("probe", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := string(logs)
	for _, a := range []string{addr, routed} {
		if !strings.Contains(out, a+" unreachable") {
			t.Errorf("the pod reached %s:\n%s", a, out)
		}
	}
	if routedAccepted() {
		t.Errorf("the listener behind the route to %s accepted a connection from the pod network", routed)
	}
	if !regexp.MustCompile(`(?m)^\d+\.\d+\.\d+\.\d+ reached$`).MatchString(out) {
		t.Errorf("the pod did not reach the API server through its Service (the network itself is broken?):\n%s", out)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the listener on %s accepted %d connections from the pod network", addr, n)
	}
	if after := dropCounter(t); after <= before {
		t.Errorf("the drop rule's counter went from %d to %d: the rule did not drop the pod's packets", before, after)
	}

	// A pod in the host's network namespace would not pass through the rule: none is admitted.
	// Nor is a privileged one, or one in the host's PID namespace (either could enter the host's
	// network namespace).
	host := probe.DeepCopy()
	host.Name, host.Spec.HostNetwork = "host-probe", true
	privileged := probe.DeepCopy()
	privileged.Name = "privileged-probe"
	privileged.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
	hostPID := probe.DeepCopy()
	hostPID.Name, hostPID.Spec.HostPID = "hostpid-probe", true
	for _, p := range []*corev1.Pod{host, privileged, hostPID} {
		if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "must stay on this machine") {
			t.Errorf("pod %s was not refused: %v", p.Name, err)
		}
	}
}

// The pod bridge's MAC address is one the kernel must keep (addr_assign_type 3, "set"): one it
// picked itself follows the lowest MAC of the bridge's ports, changing as pods come and go, and
// the pods' ARP entries for the node (their DNS server and Service gateway) would then point at
// an address nobody answers for: lookups fail with EAI_AGAIN for up to a minute.
func TestE2EPodBridgeKeepsItsAddress(t *testing.T) {
	t.Parallel()
	testbed.Require(t)
	b, err := os.ReadFile("/sys/class/net/sbtb0/addr_assign_type")
	if err != nil {
		t.Fatalf("the pod bridge: %v", err)
	}
	if got := strings.TrimSpace(string(b)); got != "3" {
		t.Errorf("sbtb0 addr_assign_type = %s, want 3 (set): its MAC address follows its ports", got)
	}
}
