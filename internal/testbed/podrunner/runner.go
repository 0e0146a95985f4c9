package podrunner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// ReadyAnnotation is set on a database pod once its server accepts connections; the value is the
// loopback port. The test bed's pod-ready Stage waits for it.
const ReadyAnnotation = "testbed.stackblaze.io/postgres-ready"

// FieldManager is the server-side apply field manager of everything the runner writes.
const FieldManager = "stackblaze-testbed-podrunner"

var kwokGroupVersion = schema.GroupVersion{Group: "kwok.x-k8s.io", Version: "v1alpha1"}

// Config holds what the runner needs.
type Config struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// StateDir holds one directory per pod (logs, sockets, scratch files).
	StateDir string
	// BinDir holds initdb, postgres, psql and the other server binaries.
	BinDir string
	// UID and GID are those of the local user that runs the servers (never root).
	UID, GID uint32
	Log      *slog.Logger
}

// Runner reconciles database pods into local PostgreSQL servers.
type Runner struct {
	cfg     Config
	queue   workqueue.TypedRateLimitingInterface[string]
	lister  cacheLister
	mu      sync.Mutex
	servers map[string]*server // by pod namespace/name
}

type cacheLister interface {
	GetByKey(key string) (any, bool, error)
}

// New returns a Runner; call Run to start it.
func New(cfg Config) *Runner {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Runner{
		cfg:     cfg,
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		servers: map[string]*server{},
	}
}

// IsDatabasePod reports whether the runner serves this pod: it is bound to a node and one of its
// containers runs a PostgreSQL image.
func IsDatabasePod(pod *corev1.Pod) bool {
	return pod.Spec.NodeName != "" && databaseContainer(pod) != nil
}

func databaseContainer(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.Containers {
		if isPostgresImage(pod.Spec.Containers[i].Image) {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// isPostgresImage matches "postgres:16", "library/postgres", "registry.example/team/postgres-pgbackrest:16".
func isPostgresImage(image string) bool {
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.IndexAny(name, ":@"); i >= 0 {
		name = name[:i]
	}
	return strings.Contains(name, "postgres")
}

// Run watches pods until ctx ends, then stops every server it started.
func (r *Runner) Run(ctx context.Context, workers int) error {
	factory := informers.NewSharedInformerFactory(r.cfg.Client, 10*time.Minute)
	inf := factory.Core().V1().Pods().Informer()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			r.queue.Add(key)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	r.lister = inf.GetStore()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return errors.New("pod informer did not sync")
	}
	r.cfg.Log.Info("pod runner started", "stateDir", r.cfg.StateDir, "binDir", r.cfg.BinDir)

	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	r.queue.ShutDown()
	wg.Wait()
	factory.Shutdown()
	r.stopAll()
	return nil
}

func (r *Runner) processNext(ctx context.Context) bool {
	key, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(key)
	if err := r.reconcile(ctx, key); err != nil {
		if ctx.Err() != nil {
			return true
		}
		r.cfg.Log.Warn("reconcile failed; will retry", "pod", key, "err", err)
		r.queue.AddRateLimited(key)
		return true
	}
	r.queue.Forget(key)
	return true
}

func (r *Runner) reconcile(ctx context.Context, key string) error {
	obj, exists, err := r.lister.GetByKey(key)
	if err != nil {
		return err
	}
	var pod *corev1.Pod
	if exists {
		pod = obj.(*corev1.Pod)
	}
	r.mu.Lock()
	srv := r.servers[key]
	r.mu.Unlock()

	gone := pod == nil || pod.DeletionTimestamp != nil || !IsDatabasePod(pod) ||
		pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if srv != nil && (gone || srv.podUID != pod.UID) {
		r.cfg.Log.Info("stopping server", "pod", key, "uid", srv.podUID)
		srv.stop()
		r.mu.Lock()
		delete(r.servers, key)
		r.mu.Unlock()
		srv = nil
	}
	if gone {
		return nil
	}
	if srv != nil {
		// Running: make sure the pod carries the annotation (a restarted runner, a lost patch).
		if pod.Annotations[ReadyAnnotation] == "" {
			return r.markReady(ctx, pod, srv.port)
		}
		return nil
	}
	srv, err = r.start(ctx, pod)
	if err != nil {
		return fmt.Errorf("start PostgreSQL for pod %s: %w", key, err)
	}
	r.mu.Lock()
	r.servers[key] = srv
	r.mu.Unlock()
	if err := r.publish(ctx, pod, srv); err != nil {
		return err
	}
	return r.markReady(ctx, pod, srv.port)
}

func (r *Runner) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var wg sync.WaitGroup
	for key, s := range r.servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.stop() }()
		delete(r.servers, key)
	}
	wg.Wait()
}

func (r *Runner) markReady(ctx context.Context, pod *corev1.Pod, port int) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, ReadyAnnotation, fmt.Sprint(port))
	_, err := r.cfg.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// publish tells KWOK how to reach the server: port-forward, exec and logs for the pod.
func (r *Runner) publish(ctx context.Context, pod *corev1.Pod, srv *server) error {
	owner := map[string]any{
		"apiVersion": "v1", "kind": "Pod", "name": pod.Name, "uid": string(pod.UID),
	}
	meta := func(kind string) map[string]any {
		return map[string]any{
			"apiVersion": kwokGroupVersion.String(),
			"kind":       kind,
			"metadata": map[string]any{
				"name": pod.Name, "namespace": pod.Namespace,
				"ownerReferences": []any{owner},
			},
		}
	}
	envs := []any{}
	keys := make([]string, 0, len(srv.execEnv))
	for k := range srv.execEnv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		envs = append(envs, map[string]any{"name": k, "value": srv.execEnv[k]})
	}
	objs := map[string]map[string]any{
		"portforwards": meta("PortForward"),
		"execs":        meta("Exec"),
		"logs":         meta("Logs"),
	}
	objs["portforwards"]["spec"] = map[string]any{"forwards": []any{map[string]any{
		"ports":  []any{int64(5432)},
		"target": map[string]any{"port": int64(srv.port), "address": "127.0.0.1"},
	}}}
	objs["execs"]["spec"] = map[string]any{"execs": []any{map[string]any{
		"local": map[string]any{
			"workDir":         srv.dataDir,
			"envs":            envs,
			"securityContext": map[string]any{"runAsUser": int64(r.cfg.UID), "runAsGroup": int64(r.cfg.GID)},
		},
	}}}
	objs["logs"]["spec"] = map[string]any{"logs": []any{map[string]any{
		"logsFile": srv.logFile, "follow": true,
	}}}
	for resource, obj := range objs {
		u := &unstructured.Unstructured{Object: obj}
		_, err := r.cfg.Dynamic.Resource(kwokGroupVersion.WithResource(resource)).Namespace(pod.Namespace).
			Apply(ctx, pod.Name, u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if err != nil {
			return fmt.Errorf("apply KWOK %s for pod %s/%s: %w", resource, pod.Namespace, pod.Name, err)
		}
	}
	return nil
}

// podDir is the runner's scratch directory for one pod incarnation.
func (r *Runner) podDir(pod *corev1.Pod) string {
	return filepath.Join(r.cfg.StateDir, pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)[:8])
}

func mkdirOwned(path string, uid, gid uint32, mode os.FileMode) error {
	if err := os.MkdirAll(path, mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	return os.Chown(path, int(uid), int(gid))
}
