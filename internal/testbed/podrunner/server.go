package podrunner

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const defaultPGDATA = "/var/lib/postgresql/data"

// server is one running PostgreSQL server that stands in for one pod's container.
type server struct {
	podUID  types.UID
	port    int
	dataDir string
	sockDir string
	logFile string
	execEnv map[string]string
	cmd     *exec.Cmd
	done    chan struct{}
}

// start resolves the pod's container into a data directory and environment, initialises the data
// directory when it is new, starts the server and waits until it accepts connections.
func (r *Runner) start(ctx context.Context, pod *corev1.Pod) (*server, error) {
	c := databaseContainer(pod)
	env, err := r.resolveEnv(ctx, pod, c)
	if err != nil {
		return nil, err
	}
	pgdata := env["PGDATA"]
	if pgdata == "" {
		pgdata = defaultPGDATA
	}
	dataDir, err := r.hostPath(ctx, pod, c, pgdata)
	if err != nil {
		return nil, err
	}
	dir := r.podDir(pod)
	if err := mkdirOwned(dir, r.cfg.UID, r.cfg.GID, 0o755); err != nil {
		return nil, err
	}
	// Unix socket paths are limited to about 100 bytes: keep the socket directory short.
	sum := sha256.Sum256([]byte(dir))
	sockDir := filepath.Join(os.TempDir(), "sbtb-"+hex.EncodeToString(sum[:6]))
	if err := mkdirOwned(sockDir, r.cfg.UID, r.cfg.GID, 0o700); err != nil {
		return nil, err
	}
	// Every claim is mounted writable for the server's user, as fsGroup makes it in a pod; the
	// files of ConfigMap and Secret volumes are written where commands run for the pod find them.
	for _, m := range c.VolumeMounts {
		v := findVolume(pod, m.Name)
		if v == nil || (v.PersistentVolumeClaim == nil && v.ConfigMap == nil && v.Secret == nil) {
			continue
		}
		hp, err := r.hostPath(ctx, pod, c, path.Clean(m.MountPath))
		if err != nil {
			return nil, err
		}
		if err := mkdirOwned(hp, r.cfg.UID, r.cfg.GID, 0o755); err != nil {
			return nil, err
		}
		if v.PersistentVolumeClaim != nil {
			continue
		}
		files, err := r.volumeFiles(ctx, pod, c, m.MountPath)
		if err != nil {
			return nil, err
		}
		for name, data := range files {
			f := filepath.Join(hp, filepath.Base(name))
			if err := os.WriteFile(f, data, 0o600); err != nil {
				return nil, err
			}
			if err := os.Chown(f, int(r.cfg.UID), int(r.cfg.GID)); err != nil {
				return nil, err
			}
		}
	}
	if err := mkdirOwned(filepath.Dir(dataDir), r.cfg.UID, r.cfg.GID, 0o755); err != nil {
		return nil, err
	}
	if err := mkdirOwned(dataDir, r.cfg.UID, r.cfg.GID, 0o700); err != nil {
		return nil, err
	}
	// A server from an earlier pod (or an earlier runner) may still hold this data directory.
	stopStale(dataDir)

	user := env["POSTGRES_USER"]
	if user == "" {
		user = "postgres"
	}
	db := env["POSTGRES_DB"]
	if db == "" {
		db = user
	}
	fresh := false
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		password, err := r.password(ctx, pod, c, env)
		if err != nil {
			return nil, err
		}
		if err := r.initdb(dataDir, dir, user, password); err != nil {
			return nil, err
		}
		fresh = true
	}

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logFile := filepath.Join(dir, "postgres.log")
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	_ = os.Chown(logFile, int(r.cfg.UID), int(r.cfg.GID))
	args := []string{"-D", dataDir, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + sockDir,
		"-c", "logging_collector=off"}
	args = append(args, serverSettings(c)...)
	// The container's environment, with paths inside its volumes mapped to this machine, is
	// the server's too, as in the container: archive_command and restore_command read it (the
	// PGBACKREST_* configuration of backups).
	env, err = r.hostEnv(ctx, pod, c, env)
	if err != nil {
		lf.Close()
		return nil, err
	}
	env["PGDATA"] = dataDir
	cmd := exec.Command(filepath.Join(r.cfg.BinDir, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Dir = dir
	cmd.Env = r.baseEnv()
	for k, v := range env {
		if k != "PATH" && k != "HOME" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: r.cfg.UID, Gid: r.cfg.GID},
		Setpgid:    true, // a Ctrl-C to the runner's terminal must not reach the servers directly
		Pdeathsig:  syscall.SIGINT,
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	lf.Close()
	srv := &server{podUID: pod.UID, port: port, dataDir: dataDir, sockDir: sockDir, logFile: logFile, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(srv.done) }()
	if err := srv.waitAccepting(ctx, 60*time.Second); err != nil {
		srv.stop()
		return nil, fmt.Errorf("%w (log: %s)", err, logFile)
	}

	srv.execEnv = map[string]string{}
	for k, v := range env {
		srv.execEnv[k] = v
	}
	for k, v := range map[string]string{
		"PGHOST": sockDir, "PGPORT": strconv.Itoa(port), "PGDATA": dataDir,
		"PGUSER": user, "PGDATABASE": db,
		"PATH": r.cfg.BinDir + ":" + os.Getenv("PATH"),
	} {
		srv.execEnv[k] = v
	}
	if fresh {
		if err := r.firstInit(ctx, pod, c, srv, user, db); err != nil {
			srv.stop()
			// Leave no half-initialised directory behind: the next attempt starts over.
			_ = os.RemoveAll(dataDir)
			return nil, err
		}
	}
	r.cfg.Log.Info("server ready", "pod", pod.Namespace+"/"+pod.Name, "port", port, "dataDir", dataDir, "fresh", fresh)
	return srv, nil
}

// serverSettings passes the container's "-c name=value" arguments on to postgres, as the official
// image's entrypoint does with its command line.
func serverSettings(c *corev1.Container) []string {
	argv := append(append([]string{}, c.Command...), c.Args...)
	var out []string
	for i := 0; i < len(argv); i++ {
		switch {
		case argv[i] == "-c" && i+1 < len(argv):
			out = append(out, "-c", argv[i+1])
			i++
		case strings.HasPrefix(argv[i], "--") && strings.Contains(argv[i], "="):
			out = append(out, "-c", strings.TrimPrefix(argv[i], "--"))
		}
	}
	// The test bed owns where the server listens and logs.
	var kept []string
	for i := 0; i+1 < len(out); i += 2 {
		name := strings.SplitN(out[i+1], "=", 2)[0]
		switch name {
		case "listen_addresses", "port", "unix_socket_directories", "logging_collector", "data_directory":
			continue
		}
		kept = append(kept, out[i], out[i+1])
	}
	return kept
}

func (r *Runner) baseEnv() []string {
	return []string{"PATH=" + r.cfg.BinDir + ":/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "HOME=" + os.TempDir()}
}

func (r *Runner) initdb(dataDir, scratch, user, password string) error {
	pwfile := filepath.Join(scratch, "pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if err := os.Chown(pwfile, int(r.cfg.UID), int(r.cfg.GID)); err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(r.cfg.BinDir, "initdb"), "-D", dataDir, "-U", user,
		"--pwfile="+pwfile, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
	cmd.Env = r.baseEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: r.cfg.UID, Gid: r.cfg.GID}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(dataDir)
		return fmt.Errorf("initdb: %w: %s", err, lastLines(out, 5))
	}
	// As the official image does: password logins from anywhere the server listens.
	hba, err := os.OpenFile(filepath.Join(dataDir, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer hba.Close()
	_, err = hba.WriteString("\nhost all all all scram-sha-256\n")
	return err
}

// firstInit creates POSTGRES_DB and runs /docker-entrypoint-initdb.d, as the image does once.
func (r *Runner) firstInit(ctx context.Context, pod *corev1.Pod, c *corev1.Container, srv *server, user, db string) error {
	if db != "postgres" {
		if err := r.runLocal(ctx, srv, []string{"psql", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c",
			fmt.Sprintf(`CREATE DATABASE "%s"`, strings.ReplaceAll(db, `"`, `""`))}); err != nil {
			return fmt.Errorf("create database %s: %w", db, err)
		}
	}
	scripts, err := r.initScripts(ctx, pod, c)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	dir := filepath.Join(r.podDir(pod), "initdb.d")
	if err := mkdirOwned(dir, r.cfg.UID, r.cfg.GID, 0o700); err != nil {
		return err
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, scripts[n], 0o700); err != nil {
			return err
		}
		_ = os.Chown(p, int(r.cfg.UID), int(r.cfg.GID))
		var argv []string
		switch {
		case strings.HasSuffix(n, ".sh"):
			argv = []string{"bash", p}
		case strings.HasSuffix(n, ".sql"):
			argv = []string{"psql", "-v", "ON_ERROR_STOP=1", "-f", p}
		default:
			continue
		}
		if err := r.runLocal(ctx, srv, argv); err != nil {
			return fmt.Errorf("init script %s: %w", n, err)
		}
	}
	return nil
}

// runLocal runs a command as the server's user with the container's environment.
func (r *Runner) runLocal(ctx context.Context, srv *server, argv []string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if p, err := exec.LookPath(filepath.Join(r.cfg.BinDir, argv[0])); err == nil {
		cmd.Path = p
	}
	cmd.Env = r.baseEnv()
	for k, v := range srv.execEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = filepath.Dir(srv.logFile)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: r.cfg.UID, Gid: r.cfg.GID}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, lastLines(out, 8))
	}
	return nil
}

// waitAccepting waits until the postmaster reports "ready" in postmaster.pid, the same signal
// pg_ctl start -w uses.
func (s *server) waitAccepting(ctx context.Context, limit time.Duration) error {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(filepath.Join(s.dataDir, "postmaster.pid")); err == nil {
			lines := strings.Split(string(b), "\n")
			if len(lines) >= 8 && strings.TrimSpace(lines[7]) == "ready" {
				return nil
			}
		}
		select {
		case <-s.done:
			return errors.New("postgres exited during start-up")
		case <-deadline.C:
			return fmt.Errorf("postgres did not accept connections within %s", limit)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// stop asks for a fast shutdown, as the container runtime's SIGTERM does with the real image
// (whose entrypoint maps it to postgres' fast shutdown), and kills the server if it lingers.
func (s *server) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = os.RemoveAll(s.sockDir)
}

// stopStale stops a postmaster left running on dataDir by an earlier pod or runner.
func stopStale(dataDir string) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || !strings.HasPrefix(string(comm), "postgres") {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGINT)
	for i := 0; i < 300; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// hostEnv maps environment values that are absolute paths inside one of the container's volumes
// (PGBACKREST_REPO1_PATH=/var/lib/postgresql/data/pgbackrest/repo) to where that volume lives on
// this machine, so that commands run for the pod see the files the container would.
func (r *Runner) hostEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container, env map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = v
		if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, " :") {
			continue
		}
		for _, m := range c.VolumeMounts {
			mp := path.Clean(m.MountPath)
			if v == mp || strings.HasPrefix(v, mp+"/") {
				hp, err := r.hostPath(ctx, pod, c, v)
				if err != nil {
					return nil, fmt.Errorf("env %s: %w", k, err)
				}
				out[k] = hp
				break
			}
		}
	}
	return out, nil
}

// resolveEnv resolves the container's environment the way the kubelet does for the variables a
// database container uses: literal values, Secret and ConfigMap keys, the pod's own fields and
// envFrom.
func (r *Runner) resolveEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.SecretRef != nil:
			s, err := r.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			for k, v := range s.Data {
				env[from.Prefix+k] = string(v)
			}
		case from.ConfigMapRef != nil:
			cm, err := r.cfg.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = v
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expand(e.Value, env)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, err := r.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			v, ok := s.Data[ref.Key]
			if !ok && !(ref.Optional != nil && *ref.Optional) {
				return nil, fmt.Errorf("env %s: secret %s has no key %s", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = string(v)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm, err := r.cfg.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env[e.Name] = cm.Data[ref.Key]
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				env[e.Name] = pod.Name
			case "metadata.namespace":
				env[e.Name] = pod.Namespace
			case "status.podIP":
				env[e.Name] = "127.0.0.1"
			}
		}
	}
	return env, nil
}

// expand resolves $(VAR) references as the kubelet does.
func expand(s string, env map[string]string) string {
	for k, v := range env {
		s = strings.ReplaceAll(s, "$("+k+")", v)
	}
	return s
}

// password returns POSTGRES_PASSWORD, or the content of POSTGRES_PASSWORD_FILE read from the
// pod's Secret or ConfigMap volume that holds it.
func (r *Runner) password(ctx context.Context, pod *corev1.Pod, c *corev1.Container, env map[string]string) (string, error) {
	if p := env["POSTGRES_PASSWORD"]; p != "" {
		return p, nil
	}
	file := env["POSTGRES_PASSWORD_FILE"]
	if file == "" {
		return "", errors.New("neither POSTGRES_PASSWORD nor POSTGRES_PASSWORD_FILE is set: the postgres image refuses to initialise")
	}
	files, err := r.volumeFiles(ctx, pod, c, path.Dir(file))
	if err != nil {
		return "", err
	}
	v, ok := files[path.Base(file)]
	if !ok {
		return "", fmt.Errorf("POSTGRES_PASSWORD_FILE %s is not in any mounted Secret or ConfigMap", file)
	}
	return strings.TrimRight(string(v), "\n"), nil
}

func (r *Runner) initScripts(ctx context.Context, pod *corev1.Pod, c *corev1.Container) (map[string][]byte, error) {
	return r.volumeFiles(ctx, pod, c, "/docker-entrypoint-initdb.d")
}

// volumeFiles returns the files that a Secret or ConfigMap volume mounted at dir shows.
func (r *Runner) volumeFiles(ctx context.Context, pod *corev1.Pod, c *corev1.Container, dir string) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Clean(dir) {
			continue
		}
		v := findVolume(pod, m.Name)
		if v == nil {
			continue
		}
		switch {
		case v.ConfigMap != nil:
			cm, err := r.cfg.Client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			for k, val := range cm.Data {
				files[k] = []byte(val)
			}
			for k, val := range cm.BinaryData {
				files[k] = val
			}
			remap(files, v.ConfigMap.Items)
		case v.Secret != nil:
			s, err := r.cfg.Client.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			for k, val := range s.Data {
				files[k] = val
			}
			remap(files, v.Secret.Items)
		}
	}
	return files, nil
}

func remap(files map[string][]byte, items []corev1.KeyToPath) {
	if len(items) == 0 {
		return
	}
	out := map[string][]byte{}
	for _, it := range items {
		if v, ok := files[it.Key]; ok {
			out[it.Path] = v
		}
	}
	for k := range files {
		delete(files, k)
	}
	for k, v := range out {
		files[k] = v
	}
}

func findVolume(pod *corev1.Pod, name string) *corev1.Volume {
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

// hostPath maps a path inside the container to the host: through the PersistentVolume's hostPath
// when the mount is a claim, or to a per-pod directory for anything else (emptyDir, no mount).
func (r *Runner) hostPath(ctx context.Context, pod *corev1.Pod, c *corev1.Container, inContainer string) (string, error) {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		mp := path.Clean(m.MountPath)
		if inContainer == mp || strings.HasPrefix(inContainer, mp+"/") {
			if best == nil || len(mp) > len(path.Clean(best.MountPath)) {
				best = m
			}
		}
	}
	if best == nil {
		return filepath.Join(r.podDir(pod), "rootfs", inContainer), nil
	}
	rest := strings.TrimPrefix(inContainer, path.Clean(best.MountPath))
	if best.SubPath != "" {
		rest = "/" + best.SubPath + rest
	}
	v := findVolume(pod, best.Name)
	if v == nil || v.PersistentVolumeClaim == nil {
		// Ephemeral storage lives and dies with the pod incarnation, as on a node.
		return filepath.Join(r.podDir(pod), "volumes", best.Name) + rest, nil
	}
	pvc, err := r.cfg.Client.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if pvc.Spec.VolumeName == "" {
		return "", fmt.Errorf("claim %s is not bound yet", pvc.Name)
	}
	pv, err := r.cfg.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if pv.Spec.HostPath == nil {
		return "", fmt.Errorf("volume %s has no hostPath: the test bed's volume stage provisions hostPath volumes only", pv.Name)
	}
	return pv.Spec.HostPath.Path + rest, nil
}
