//go:build testbedcycle

// The test of `make testbed-down` takes the test bed down and brings it up again, so it cannot
// run beside the other end-to-end tests: `make test` runs it on its own, after them, with
// -tags testbedcycle.

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
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// machine is what the test bed may change on this machine, read from the kernel.
type machine struct {
	Mounts     []string
	Interfaces []string
	IPTables   string
	Cgroups    []string
	Sysctls    map[string]string
	Dirs       map[string]bool
	Processes  []string
	// Loops are the attached loop devices and their files (the volumes' images).
	Loops []string
}

// sysctls are the settings up.sh changes or lets the kubelet, kube-proxy and the CNI plugins change.
var sysctls = []string{
	"net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables",
	"net/ipv4/conf/all/route_localnet", "net/ipv4/conf/all/forwarding", "vm/overcommit_memory", "vm/panic_on_oom",
	"kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

func readMachine(t *testing.T, tb string) machine {
	t.Helper()
	m := machine{Sysctls: map[string]string{}, Dirs: map[string]bool{}}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		_, post, _ := strings.Cut(line, " - ")
		m.Mounts = append(m.Mounts, f[4]+" "+strings.Join(strings.Fields(post)[:2], " "))
	}
	slices.Sort(m.Mounts)
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		m.Interfaces = append(m.Interfaces, i.Name)
	}
	slices.Sort(m.Interfaces)
	var ipt bytes.Buffer
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		out, err := exec.Command(tool).Output()
		if err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if l := sc.Text(); !strings.HasPrefix(l, "#") {
				ipt.WriteString(counters.ReplaceAllString(l, "") + "\n")
			}
		}
	}
	m.IPTables = ipt.String()
	ctrls, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, c := range ctrls {
		entries, _ := os.ReadDir(c)
		for _, e := range entries {
			if e.IsDir() {
				m.Cgroups = append(m.Cgroups, filepath.Join(c, e.Name()))
			}
		}
	}
	slices.Sort(m.Cgroups)
	for _, k := range sysctls {
		if v, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			m.Sysctls[k] = strings.TrimSpace(string(v))
		}
	}
	for _, d := range []string{tb, "/var/lib/cni", "/var/log/containers", "/var/log/pods", "/run/containerd", "/var/run/netns", "/etc/cni", "/var/lib/kubelet", "/usr/libexec/kubernetes", "/opt/containerd", "/run/nri"} {
		_, err := os.Stat(d)
		m.Dirs[d] = err == nil
	}
	out, err := exec.Command("losetup", "-n", "-l", "-O", "NAME,BACK-FILE").Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	m.Loops = strings.Fields(strings.TrimSpace(string(out)))
	slices.Sort(m.Loops)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := strings.ReplaceAll(string(cmd), "\x00", " ")
		if strings.Contains(s, tb+"/") || strings.Contains(s, "/run/stackblaze-testbed-") || strings.Contains(s, "stackblaze-testbed") {
			m.Processes = append(m.Processes, filepath.Base(filepath.Dir(p))+": "+s)
		}
	}
	return m
}

func script(t *testing.T, env *testbed.Env, name string) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(env.Root, "hack", "testbed", name))
	cmd.Dir = env.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func diff(what string, before, after []string) string {
	var b strings.Builder
	for _, x := range after {
		if !slices.Contains(before, x) {
			fmt.Fprintf(&b, "  %s left: %s\n", what, x)
		}
	}
	for _, x := range before {
		if !slices.Contains(after, x) {
			fmt.Fprintf(&b, "  %s gone: %s\n", what, x)
		}
	}
	return b.String()
}

// TestE2ETestbedCycle takes the test bed down, reads the machine, brings the test bed up and
// runs a pod (so that there are containers, mounts, a network namespace, a veth and kube-proxy
// rules to clean up), checks that all of that exists, takes it down again, and reads the machine
// again: no process, mount, interface, iptables rule, cgroup or directory of the test bed is left,
// and the sysctls are as they were.
func TestE2ETestbedCycle(t *testing.T) {
	env := testbed.Require(t)
	tb := filepath.Dir(env.Kubeconfig)
	script(t, env, "down.sh")
	before := readMachine(t, tb)
	if before.Dirs[tb] || len(before.Processes) != 0 {
		t.Fatalf("after down.sh, %s exists (%v) or processes run: %v", tb, before.Dirs[tb], before.Processes)
	}

	script(t, env, "up.sh")
	// A new cluster with a new CA at the same paths: read the files now (client-go caches TLS
	// transports by file name).
	cfg, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err == nil {
		err = rest.LoadTLSFiles(cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	ctx := testbed.Context(t, 3*time.Minute)
	// With a volume: a loop-mounted filesystem to clean up too.
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "cycle", Namespace: "default"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}
	if _, err := client.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "cycle", Namespace: "default"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](999)},
			Containers: []corev1.Container{{
				Name: "c", Image: database.DefaultImageRepository + ":17", Command: []string{"sleep", "3600"},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "cycle"}}}},
		},
	}
	if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := testbed.WaitPod(ctx, client, "default", "cycle", func(p *corev1.Pod) bool {
		return p != nil && p.Status.Phase == corev1.PodRunning
	}); err != nil {
		t.Fatal(err)
	}
	up := readMachine(t, tb)
	for what, ok := range map[string]bool{
		"processes of the test bed":      len(up.Processes) >= 8,
		"the bridge sbtb0":               slices.Contains(up.Interfaces, "sbtb0"),
		"a veth of the pod":              len(up.Interfaces) >= len(before.Interfaces)+2,
		"the drop rule's chain":          strings.Contains(up.IPTables, ":STACKBLAZE-TESTBED"),
		"kube-proxy's chains":            strings.Contains(up.IPTables, ":KUBE-SERVICES"),
		"the test bed's cgroups":         len(up.Cgroups) > len(before.Cgroups),
		"mounts of the pod":              len(up.Mounts) > len(before.Mounts),
		"a loop device of its volume":    len(up.Loops) > len(before.Loops),
		"forwarding on (ip_forward=1)":   up.Sysctls["net/ipv4/ip_forward"] == "1",
		"the test bed's state directory": up.Dirs[tb],
	} {
		if !ok {
			t.Errorf("while up, the machine shows no %s: the comparison below would prove nothing", what)
		}
	}

	script(t, env, "down.sh")
	after := readMachine(t, tb)
	var report strings.Builder
	report.WriteString(diff("mount", before.Mounts, after.Mounts))
	report.WriteString(diff("interface", before.Interfaces, after.Interfaces))
	report.WriteString(diff("loop device", before.Loops, after.Loops))
	report.WriteString(diff("cgroup", before.Cgroups, after.Cgroups))
	report.WriteString(diff("iptables line", strings.Split(before.IPTables, "\n"), strings.Split(after.IPTables, "\n")))
	for _, p := range after.Processes {
		fmt.Fprintf(&report, "  process left: %s\n", p)
	}
	for k, v := range before.Sysctls {
		if after.Sysctls[k] != v {
			fmt.Fprintf(&report, "  sysctl %s: %s before up, %s after down\n", k, v, after.Sysctls[k])
		}
	}
	for d, existed := range before.Dirs {
		if after.Dirs[d] != existed {
			fmt.Fprintf(&report, "  directory %s: existed %v before up, %v after down\n", d, existed, after.Dirs[d])
		}
	}
	if report.Len() > 0 {
		t.Errorf("testbed-down did not leave the machine as it found it:\n%s", report.String())
	}
}
