package commands_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/stackblaze/stackblaze/internal/commands"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/testbed"
	"github.com/stackblaze/stackblaze/internal/tunnel"
)

type result struct {
	code   int
	stdout string
	stderr string
}

// cli runs stackblaze in-process against the test bed, in namespace ns, with the given kubeconfig
// (the admin one when empty), not on a terminal, with an empty environment.
func cli(t *testing.T, kubeconfig, ns string, args ...string) result {
	t.Helper()
	return cliIn(t, t.TempDir(), nil, kubeconfig, ns, args...)
}

// cliIn is cli run in the project directory dir (where .stackblaze.yaml is read), with
// dir/config.yaml as the user's own config file; with a non-nil kube, the Factory uses that client.
func cliIn(t *testing.T, dir string, c *kube.Client, kubeconfig, ns string, args ...string) result {
	t.Helper()
	env := testbed.Require(t)
	if kubeconfig == "" {
		kubeconfig = env.Kubeconfig
	}
	var out, errOut bytes.Buffer
	ios := output.Test(nil, &out, &errOut)
	f := commands.NewFactory(ios)
	if c != nil {
		f.Kube = func() (*kube.Client, error) { return c, nil }
	}
	f.ConfigSources = cmdutil.ConfigSources{UserFile: filepath.Join(dir, "config.yaml"), Dir: dir, Getenv: func(string) string { return "" }}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	all := append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...)
	code := commands.Run(ctx, f, all)
	t.Logf("stackblaze %s -> exit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	return result{code, out.String(), errOut.String()}
}

func mustOK(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", r.code, r.stderr)
	}
}

func secretData(t *testing.T, ns, name string) map[string][]byte {
	t.Helper()
	env := testbed.Require(t)
	s, err := env.Client.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get secret %s: %v", name, err)
	}
	return s.Data
}

// connect opens a tunnel to the database's pod and logs in with the credentials from its Secret:
// one attempt, no retry.
func connect(t *testing.T, ns, name string) *pgx.Conn {
	t.Helper()
	env := testbed.Require(t)
	ctx := testbed.Context(t, time.Minute)
	tun, err := tunnel.Open(ctx, tunnel.Config{REST: env.REST, Client: env.Client, Logf: t.Logf},
		tunnel.Target{Namespace: ns, Pod: database.PodName(name), Port: database.Port})
	if err != nil {
		t.Fatalf("open tunnel: %v", err)
	}
	t.Cleanup(func() { _ = tun.Close() })
	d := secretData(t, ns, database.CredentialsSecretName(name))
	cfg, err := pgx.ParseConfig("sslmode=disable connect_timeout=10")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.Port = "127.0.0.1", uint16(tun.Port())
	cfg.User, cfg.Password, cfg.Database = string(d["username"]), string(d["password"]), string(d["database"])
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("login as %s through the tunnel: %v", cfg.User, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

var base64url = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestE2ECreateMakesEveryObject(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := testbed.Context(t, 6*time.Minute)

	r := cli(t, "", ns, "db", "create", "shop-db", "--version", "15", "--storage", "2G", "--plan", "hobby", "--timeout", "4m", "-o", "json")
	mustOK(t, r)
	// create has returned: a single login attempt through a fresh port-forward must work now.
	conn := connect(t, ns, "shop-db")
	var user, db string
	if err := conn.QueryRow(ctx, "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
		t.Fatal(err)
	}
	if user != "shop_db" || db != "shop_db" {
		t.Errorf("logged in as %s to %s, want shop_db to shop_db", user, db)
	}

	var res struct {
		Ready                                 bool
		Host, Database, User, Secret, Storage string
		Port                                  int
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("create -o json is not one JSON document: %v\n%s", err, r.stdout)
	}
	if !res.Ready || res.Host != "shop-db."+ns+".svc.cluster.local" || res.Port != 5432 || res.Secret != "shop-db-credentials" || res.Storage != "2Gi" {
		t.Errorf("result %+v", res)
	}
	if !strings.Contains(r.stderr, "storage: 2G taken as 2Gi") {
		t.Errorf("stderr does not say how it read 2G:\n%s", r.stderr)
	}

	creds := secretData(t, ns, "shop-db-credentials")
	super := secretData(t, ns, "shop-db-superuser")
	for _, p := range []string{string(creds["password"]), string(super["password"])} {
		// base64url carries 6 bits per character
		if !base64url.MatchString(p) || float64(len(p))*math.Log2(64) < 190 {
			t.Errorf("password of %d characters is under 190 bits", len(p))
		}
		if strings.Contains(r.stdout+r.stderr, p) {
			t.Error("the output contains a password")
		}
	}
	if creds["password"] == nil || string(creds["password"]) == string(super["password"]) {
		t.Error("application and superuser passwords are the same")
	}
	for _, k := range []string{"username", "password", "database", "host", "port", "DATABASE_URL"} {
		if len(creds[k]) == 0 {
			t.Errorf("credentials Secret lacks %s", k)
		}
	}
	if want := fmt.Sprintf("postgresql://shop_db:%s@shop-db.%s.svc.cluster.local:5432/shop_db", creds["password"], ns); string(creds["DATABASE_URL"]) != want {
		t.Errorf("DATABASE_URL is not what the other keys say")
	}

	want := database.Labels("shop-db")
	checkLabels := func(kind, name string, got map[string]string) {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s %s: label %s=%q, want %q", kind, name, k, got[k], v)
			}
		}
	}
	c := env.Client
	sts, err := c.AppsV1().StatefulSets(ns).Get(ctx, "shop-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkLabels("statefulset", sts.Name, sts.Labels)
	if *sts.Spec.Replicas != 1 || sts.Spec.ServiceName != "shop-db-headless" || sts.Spec.Template.Spec.Containers[0].Image != "stackblaze/postgres:15" {
		t.Errorf("statefulset spec: replicas %d service %s image %s", *sts.Spec.Replicas, sts.Spec.ServiceName, sts.Spec.Template.Spec.Containers[0].Image)
	}
	if mf := sts.ManagedFields; len(mf) == 0 || mf[0].Manager != "stackblaze" || mf[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Errorf("statefulset not written by server-side apply as stackblaze: %+v", mf)
	}
	svc, err := c.CoreV1().Services(ns).Get(ctx, "shop-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkLabels("service", svc.Name, svc.Labels)
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == "None" || svc.Spec.Ports[0].Port != 5432 {
		t.Errorf("service %s: type %s clusterIP %s", svc.Name, svc.Spec.Type, svc.Spec.ClusterIP)
	}
	hl, err := c.CoreV1().Services(ns).Get(ctx, "shop-db-headless", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkLabels("service", hl.Name, hl.Labels)
	if hl.Spec.ClusterIP != "None" {
		t.Errorf("headless service clusterIP %s", hl.Spec.ClusterIP)
	}
	for _, s := range []string{"shop-db-credentials", "shop-db-superuser"} {
		sec, err := c.CoreV1().Secrets(ns).Get(ctx, s, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkLabels("secret", s, sec.Labels)
	}
	cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, "shop-db-init", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkLabels("configmap", cm.Name, cm.Labels)
	np, err := c.NetworkingV1().NetworkPolicies(ns).Get(ctx, "shop-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkLabels("networkpolicy", np.Name, np.Labels)
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 || len(np.Spec.Ingress[0].Ports) != 1 {
		t.Fatalf("network policy ingress %+v", np.Spec.Ingress)
	}
	peer := np.Spec.Ingress[0].From[0]
	if peer.NamespaceSelector != nil || peer.IPBlock != nil || peer.PodSelector == nil || len(peer.PodSelector.MatchLabels)+len(peer.PodSelector.MatchExpressions) != 0 {
		t.Errorf("network policy admits more than the same namespace: %+v", peer)
	}
	if np.Spec.Ingress[0].Ports[0].Port.IntValue() != 5432 || np.Spec.PodSelector.MatchLabels[database.LabelInstance] != "shop-db" {
		t.Errorf("network policy %+v", np.Spec)
	}
	pvc, err := c.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-shop-db-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "2Gi" {
		t.Errorf("volume claim requests %s", q.String())
	}
	// The backup volume (the pgBackRest repository): twice the data volume.
	bpvc, err := c.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "backup-shop-db-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if q := bpvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "4Gi" || bpvc.Status.Phase != corev1.ClaimBound {
		t.Errorf("backup volume claim requests %s, phase %s", q.String(), bpvc.Status.Phase)
	}
	// The daily backup at the default time, whose pods can never be taken for the database's.
	cj, err := c.BatchV1().CronJobs(ns).Get(ctx, "shop-db-backup", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkLabels("cronjob", cj.Name, cj.Labels)
	if cj.Spec.Schedule != "0 3 * * *" || cj.Spec.TimeZone == nil || *cj.Spec.TimeZone != "Etc/UTC" {
		t.Errorf("cronjob schedule %q", cj.Spec.Schedule)
	}
	jobPod := labels.Set(cj.Spec.JobTemplate.Spec.Template.Labels)
	if svcSel := labels.Set(svc.Spec.Selector); svcSel.AsSelector().Matches(jobPod) {
		t.Errorf("the backup job's pods %v match the Service's selector %v", jobPod, svcSel)
	}
	if stsSel, _ := metav1.LabelSelectorAsSelector(sts.Spec.Selector); stsSel.Matches(jobPod) {
		t.Errorf("the backup job's pods %v match the StatefulSet's selector", jobPod)
	}
	for _, kind := range []string{"serviceaccount", "role", "rolebinding"} {
		var got map[string]string
		switch kind {
		case "serviceaccount":
			o, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "shop-db-backup", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got = o.Labels
		case "role":
			o, err := c.RbacV1().Roles(ns).Get(ctx, "shop-db-backup", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got = o.Labels
		case "rolebinding":
			o, err := c.RbacV1().RoleBindings(ns).Get(ctx, "shop-db-backup", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got = o.Labels
		}
		checkLabels(kind, "shop-db-backup", got)
	}
}

func TestE2ERestrictedNamespace(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	})
	r := cli(t, "", ns, "db", "create", "strict", "--timeout", "4m")
	mustOK(t, r)
	pod, err := env.Client.CoreV1().Pods(ns).Get(context.Background(), "strict-0", metav1.GetOptions{})
	if err != nil || !kube.PodReady(pod) {
		t.Fatalf("pod strict-0 in a restricted namespace: %v", err)
	}
	// The namespace really enforces: a root pod is refused.
	bad := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "root", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := env.Client.CoreV1().Pods(ns).Create(context.Background(), bad, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("a pod without a securityContext was not refused (%v): the namespace does not enforce restricted", err)
	}
}

// namespaceContents lists what could have been created in ns.
func namespaceContents(t *testing.T, ns string) []string {
	t.Helper()
	env := testbed.Require(t)
	ctx := context.Background()
	var out []string
	stss, err := env.Client.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range stss.Items {
		out = append(out, "statefulset/"+o.Name)
	}
	svcs, _ := env.Client.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	for _, o := range svcs.Items {
		out = append(out, "service/"+o.Name)
	}
	secs, _ := env.Client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	for _, o := range secs.Items {
		out = append(out, "secret/"+o.Name)
	}
	cms, _ := env.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	for _, o := range cms.Items {
		if o.Name != "kube-root-ca.crt" {
			out = append(out, "configmap/"+o.Name)
		}
	}
	nps, _ := env.Client.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
	for _, o := range nps.Items {
		out = append(out, "networkpolicy/"+o.Name)
	}
	return out
}

func TestE2EBadInputCreatesNothing(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"db", "create", "Bad_Name"}, "lowercase letters, digits and '-'"},
		{[]string{"db", "create", strings.Repeat("x", 41)}, "at most 40"},
		{[]string{"db", "create", "ok", "--version", "14"}, "use 15, 16, 17 or 18"},
		{[]string{"db", "create", "ok", "--storage", "600Gi"}, "1Gi to 500Gi"},
		{[]string{"db", "create", "ok", "--storage", "100Mi"}, "1Gi to 500Gi"},
		{[]string{"db", "create", "ok", "--plan", "free"}, "hobby, standard, pro"},
	} {
		r := cli(t, "", ns, tc.args...)
		if r.code != cmdutil.ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if got := namespaceContents(t, ns); len(got) != 0 {
		t.Errorf("bad input created %v", got)
	}
}

func TestE2ECreateTwiceAndConflict(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	mustOK(t, cli(t, "", ns, "db", "create", "twice", "--storage", "1Gi", "--timeout", "4m"))
	before := secretData(t, ns, "twice-credentials")
	sts1, err := env.Client.AppsV1().StatefulSets(ns).Get(context.Background(), "twice", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	r := cli(t, "", ns, "db", "create", "twice", "--storage", "1Gi", "--timeout", "4m", "-o", "json")
	mustOK(t, r)
	var res struct {
		Changed bool
		Ready   bool
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Changed || !res.Ready {
		t.Errorf("second create: changed=%v ready=%v (%v)", res.Changed, res.Ready, err)
	}
	if !strings.Contains(r.stderr, "Nothing changed") {
		t.Errorf("second create does not say nothing changed:\n%s", r.stderr)
	}
	if after := secretData(t, ns, "twice-credentials"); string(after["password"]) != string(before["password"]) {
		t.Error("second create changed the password")
	}

	r = cli(t, "", ns, "db", "create", "twice", "--storage", "5Gi", "--plan", "standard")
	if r.code != cmdutil.ExitConflict {
		t.Errorf("create with another size: exit %d, want 6", r.code)
	}
	for _, want := range []string{"storage: 1Gi in the cluster, 5Gi requested", "plan: hobby in the cluster, standard requested"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}
	sts2, err := env.Client.AppsV1().StatefulSets(ns).Get(context.Background(), "twice", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sts2.ResourceVersion != sts1.ResourceVersion {
		t.Errorf("the refused create (or the identical one) changed the StatefulSet")
	}
}

func TestE2EListStatusDelete(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := testbed.Context(t, 10*time.Minute)

	r := cli(t, "", ns, "db", "list", "-o", "json")
	mustOK(t, r)
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("empty list in JSON is %q, want []", r.stdout)
	}

	mustOK(t, cli(t, "", ns, "db", "create", "alpha", "--timeout", "4m"))
	mustOK(t, cli(t, "", ns, "db", "create", "beta", "--version", "15", "--storage", "3Gi", "--no-wait"))

	r = cli(t, "", ns, "db", "list")
	mustOK(t, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "alpha") || !strings.Contains(lines[1], "ready") || !strings.HasPrefix(lines[2], "beta") || !strings.Contains(lines[2], "3Gi") {
		t.Errorf("list:\n%s", r.stdout)
	}
	r = cli(t, "", ns, "db", "list", "-o", "json")
	mustOK(t, r)
	var dbs []database.Database
	if err := json.Unmarshal([]byte(r.stdout), &dbs); err != nil || len(dbs) != 2 || dbs[0].Name != "alpha" || !dbs[0].Ready || dbs[1].Version != "15" {
		t.Errorf("list -o json: %v %+v", err, dbs)
	}

	r = cli(t, "", ns, "db", "status", "alpha")
	mustOK(t, r)
	for _, want := range []string{"State:    ready", "alpha-0, Running, ready", "PostgreSQL 17 (stackblaze/postgres:17)", "1Gi requested, 1Gi (data-alpha-0, Bound)", "alpha." + ns + ".svc.cluster.local:5432",
		"Backups:  daily at 03:00 UTC, on volume backup-alpha-0, no point-in-time recovery"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status does not show %q:\n%s", want, r.stdout)
		}
	}
	r = cli(t, "", ns, "db", "status", "alpha", "-o", "json")
	mustOK(t, r)
	var st database.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.State != "ready" || st.Pod == nil || !st.Pod.Ready || st.StorageBound != "1Gi" || st.Plan != "hobby" {
		t.Errorf("status -o json: %v %+v", err, st)
	}
	if b := st.Backups; b == nil || b.Schedule != "0 3 * * *" || b.CronJob != "alpha-backup" || b.Repo.Type != "posix" || b.Repo.Path != database.BackupMountPath+"/repo" || b.VolumeClaim != "backup-alpha-0" || b.PITR {
		t.Errorf("status -o json backups: %+v", st.Backups)
	}
	r = cli(t, "", ns, "db", "status", "gamma")
	if r.code != cmdutil.ExitNotFound || !strings.Contains(r.stderr, "database gamma not found in namespace "+ns) {
		t.Errorf("status of a missing database: exit %d %s", r.code, r.stderr)
	}

	// A row written before the delete must be found by the next create of the same name.
	conn := connect(t, ns, "alpha")
	if _, err := conn.Exec(ctx, "CREATE TABLE keep(v text); INSERT INTO keep VALUES ('before delete')"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)

	r = cli(t, "", ns, "db", "delete", "alpha")
	if r.code != cmdutil.ExitUsage || !strings.Contains(r.stderr, "--yes") {
		t.Errorf("delete without --yes and without a terminal: exit %d %s", r.code, r.stderr)
	}
	if _, err := env.Client.AppsV1().StatefulSets(ns).Get(ctx, "alpha", metav1.GetOptions{}); err != nil {
		t.Fatalf("the refused delete deleted: %v", err)
	}

	r = cli(t, "", ns, "db", "delete", "alpha", "--yes", "-o", "json")
	mustOK(t, r)
	var del struct{ Deleted, Kept []string }
	if err := json.Unmarshal([]byte(r.stdout), &del); err != nil || len(del.Deleted) == 0 {
		t.Errorf("delete -o json: %v %s", err, r.stdout)
	}
	if _, err := env.Client.AppsV1().StatefulSets(ns).Get(ctx, "alpha", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("statefulset alpha still there: %v", err)
	}
	if _, err := env.Client.CoreV1().Pods(ns).Get(ctx, "alpha-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod alpha-0 still there after delete returned: %v", err)
	}
	for _, kind := range []string{"service/alpha", "service/alpha-headless", "networkpolicy/alpha", "configmap/alpha-init"} {
		for _, got := range namespaceContents(t, ns) {
			if got == kind {
				t.Errorf("%s survived the delete", kind)
			}
		}
	}
	if _, err := env.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-alpha-0", metav1.GetOptions{}); err != nil {
		t.Errorf("the volume claim did not survive delete without --delete-data: %v", err)
	}
	r = cli(t, "", ns, "db", "list", "-o", "json")
	mustOK(t, r)
	if err := json.Unmarshal([]byte(r.stdout), &dbs); err != nil || len(dbs) != 1 || dbs[0].Name != "beta" {
		t.Errorf("list after delete: %s", r.stdout)
	}

	mustOK(t, cli(t, "", ns, "db", "create", "alpha", "--timeout", "4m"))
	conn = connect(t, ns, "alpha")
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM keep").Scan(&v); err != nil || v != "before delete" {
		t.Errorf("the new create did not find the old data: %q, %v", v, err)
	}
	_ = conn.Close(ctx)

	mustOK(t, cli(t, "", ns, "db", "delete", "alpha", "--yes", "--delete-data"))
	// Gone, or going (kept only while the pod that used it finishes).
	for _, claim := range []string{"data-alpha-0", "backup-alpha-0"} {
		pvc, err := env.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		if err == nil && pvc.DeletionTimestamp == nil {
			t.Errorf("delete --delete-data kept the volume claim %s", claim)
		} else if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	if _, err := env.Client.CoreV1().Secrets(ns).Get(ctx, "alpha-credentials", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("delete --delete-data kept the credentials: %v", err)
	}
}

func TestE2EScaleKeepsData(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := testbed.Context(t, 10*time.Minute)
	mustOK(t, cli(t, "", ns, "db", "create", "sleepy", "--timeout", "4m"))
	conn := connect(t, ns, "sleepy")
	if _, err := conn.Exec(ctx, "CREATE TABLE t(v text); INSERT INTO t VALUES ('written before scale 0')"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)

	r := cli(t, "", ns, "db", "scale", "sleepy", "--replicas", "0")
	mustOK(t, r)
	if _, err := env.Client.CoreV1().Pods(ns).Get(ctx, "sleepy-0", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("pod still there after scale 0: %v", err)
	}
	r = cli(t, "", ns, "db", "status", "sleepy", "-o", "json")
	mustOK(t, r)
	var st database.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.State != "stopped" || st.Pod != nil {
		t.Errorf("status of a stopped database: %+v", st)
	}
	// create on a stopped database changes nothing and does not start it
	mustOK(t, cli(t, "", ns, "db", "create", "sleepy"))
	if sts, _ := env.Client.AppsV1().StatefulSets(ns).Get(ctx, "sleepy", metav1.GetOptions{}); *sts.Spec.Replicas != 0 {
		t.Error("create started a stopped database")
	}

	mustOK(t, cli(t, "", ns, "db", "scale", "sleepy", "--replicas", "1"))
	conn = connect(t, ns, "sleepy")
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM t").Scan(&v); err != nil || v != "written before scale 0" {
		t.Errorf("after scale 0 and 1: %q, %v", v, err)
	}
}

// serviceAccountKubeconfig binds role to a new ServiceAccount and returns a kubeconfig with a token for it.
func serviceAccountKubeconfig(t *testing.T, ns, name string, role *rbacv1.Role) string {
	t.Helper()
	env := testbed.Require(t)
	ctx := context.Background()
	role = role.DeepCopy()
	role.Name, role.Namespace = name, ns
	if _, err := env.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tok, err := env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca := env.REST.CAData
	if len(ca) == 0 && env.REST.CAFile != "" {
		if ca, err = os.ReadFile(env.REST.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["bed"] = &clientcmdapi.Cluster{Server: env.REST.Host, CertificateAuthorityData: ca, InsecureSkipTLSVerify: env.REST.Insecure}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: "bed", AuthInfo: name, Namespace: ns}
	cfg.CurrentContext = name
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestE2EErrors(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	r := cli(t, "", ns, "db", "delete", "ghost", "--yes")
	if r.code != cmdutil.ExitNotFound || !strings.Contains(r.stderr, "database ghost not found in namespace "+ns) {
		t.Errorf("delete ghost: exit %d %s", r.code, r.stderr)
	}
	r = cli(t, "", ns, "--context", "nowhere", "db", "list")
	if r.code != cmdutil.ExitUsage || !strings.Contains(r.stderr, "available contexts:") {
		t.Errorf("unknown context: exit %d %s", r.code, r.stderr)
	}
}

// A pod that is Ready but serves no PostgreSQL: create must not report success; it times out with
// exit 7 and says why. The image repository comes from the user's config file (a project's
// .stackblaze.yaml may not choose it); the test bed runs PostgreSQL only for images whose name
// contains "postgres" (KWOK marks the others Ready).
func TestE2ECreateWaitsForLogin(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("image_repository: example.invalid/not-a-database\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := cliIn(t, dir, nil, "", ns, "db", "create", "stuck", "--timeout", "15s")
	// Usually the pod is Ready within the timeout and the login is what fails; on a loaded test
	// bed the pod may not even be Ready in time. Either way: exit 7, an explanation, no summary.
	explained := strings.Contains(r.stderr, "database stuck: no login within --timeout 15s") ||
		strings.Contains(r.stderr, "database stuck is not ready after 15s")
	if r.code != cmdutil.ExitTimeout || !explained || r.stdout != "" {
		t.Errorf("exit %d, want 7 with an explanation:\n%s", r.code, r.stderr)
	}
	sts, err := env.Client.AppsV1().StatefulSets(ns).Get(context.Background(), "stuck", metav1.GetOptions{})
	if err != nil || sts.Spec.Template.Spec.Containers[0].Image != "example.invalid/not-a-database:17" {
		t.Errorf("image from the user's config file not used: %v", err)
	}
}

type countingTransport struct {
	next  http.RoundTripper
	calls *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.calls.Add(1)
	return c.next.RoundTrip(r)
}

// list answers for 500 databases with two API calls, well under a second. The StatefulSets are
// created directly (scaled to 0, so no pods run), which is all list reads.
func TestE2EList500(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := testbed.Context(t, 5*time.Minute)
	p, _ := database.LookupPlan("hobby")
	var wg sync.WaitGroup
	errs := make(chan error, 500)
	sem := make(chan struct{}, 16)
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			s := database.Spec{Name: fmt.Sprintf("db-%03d", i), Namespace: ns, Version: 16, Plan: p}
			s.Storage, _, _ = database.ParseStorage("1Gi")
			_, err := env.Client.AppsV1().StatefulSets(ns).Apply(ctx, database.BuildObjects(s, database.Credentials{}, 0).StatefulSet,
				metav1.ApplyOptions{FieldManager: "test", Force: true})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	var calls atomic.Int64
	c, err := kube.Load(kube.LoadOptions{Kubeconfig: env.Kubeconfig, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	c.REST.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt, &calls} })
	if c.Clientset, err = kubernetes.NewForConfig(c.REST); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"json", "text"} {
		calls.Store(0)
		start := time.Now()
		r := cliIn(t, t.TempDir(), c, "", ns, "db", "list", "-o", format)
		took := time.Since(start)
		mustOK(t, r)
		if n := calls.Load(); n != 2 {
			t.Errorf("-o %s: %d API calls, want 2", format, n)
		}
		// Speed is measured by BenchmarkE2EList500 (docs/benchmarks.md), not asserted here.
		t.Logf("db list -o %s with 500 databases: %s, %d API calls", format, took, calls.Load())
		if format == "json" {
			var dbs []database.Database
			if err := json.Unmarshal([]byte(r.stdout), &dbs); err != nil || len(dbs) != 500 || dbs[0].State != "stopped" {
				t.Errorf("list: %d databases, %v", len(dbs), err)
			}
		} else if n := strings.Count(r.stdout, "\n"); n != 501 {
			t.Errorf("text list has %d lines", n)
		}
	}
}
