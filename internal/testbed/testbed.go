package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Env is a connection to the running test bed.
type Env struct {
	// Root is the repository's root directory.
	Root string
	// Kubeconfig is the path of the test bed's admin kubeconfig.
	Kubeconfig string
	// REST is the admin client configuration.
	REST *rest.Config
	// Client is an admin clientset.
	Client kubernetes.Interface
}

var (
	once    sync.Once
	shared  *Env
	loadErr error
)

// RepoRoot finds the repository root by walking up from the working directory to go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// KubeconfigPath is where `make testbed-up` leaves the admin kubeconfig.
// STACKBLAZE_TESTBED_KUBECONFIG overrides it.
func KubeconfigPath() (string, error) {
	if p := os.Getenv("STACKBLAZE_TESTBED_KUBECONFIG"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".testbed", "kubeconfig"), nil
}

func load() (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	path, err := KubeconfigPath()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("the test bed is not up (%s is missing): run `make testbed-up`", path)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("read the test bed kubeconfig %s: %w", path, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		return nil, fmt.Errorf("the test bed does not answer at %s (%v): run `make testbed-up`", cfg.Host, err)
	}
	return &Env{Root: root, Kubeconfig: path, REST: cfg, Client: client}, nil
}

// Require returns the test bed, or fails the test (never skips) when it is not up.
func Require(t testing.TB) *Env {
	t.Helper()
	once.Do(func() { shared, loadErr = load() })
	if loadErr != nil {
		t.Fatalf("end-to-end test needs the local test bed: %v", loadErr)
	}
	return shared
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a fresh namespace named after the test, with the given labels, and deletes
// it when the test ends (unless STACKBLAZE_TESTBED_KEEP is set, for debugging).
func (e *Env) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	base := strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := base + "-" + hex.EncodeToString(b[:])
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"testbed.stackblaze.io/test": "true"}}}
	for k, v := range labels {
		ns.Labels[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if os.Getenv("STACKBLAZE_TESTBED_KEEP") != "" {
			t.Logf("keeping namespace %s", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := e.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

// Context returns a context that ends with the test or after d, whichever comes first.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Kubectl is the kubectl the test bed was built with (the same Kubernetes version).
func (e *Env) Kubectl() string {
	p := filepath.Join(filepath.Dir(e.Kubeconfig), "bin", "kubectl")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "kubectl"
}

// NodeIP is the address of the test bed's real node: the node's side of the pod network, which
// every pod reaches (a server a test runs on this machine listens there for the pods to reach it).
func (e *Env) NodeIP(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nodes, err := e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: NodeLabel})
	if err != nil {
		t.Fatalf("list the test bed's nodes: %v", err)
	}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				return a.Address
			}
		}
	}
	t.Fatalf("the test bed has no real node with an InternalIP (label %s)", NodeLabel)
	return ""
}

// NodeLabel selects the test bed's real node (hack/testbed/node.sh).
const NodeLabel = "stackblaze.io/testbed=real"

// AppDeployment is an application's Deployment as the tests use it: one replica of a real
// container (the database image, for its psql) that runs until it is replaced. sleep as PID 1
// ignores SIGTERM, so the grace period is short.
func AppDeployment(name, image string, env ...corev1.EnvVar) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	grace := int64(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{
					{Name: "app", Image: image, Command: []string{"sleep", "infinity"}, Env: env},
				}},
			},
		},
	}
}
