package commands_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	utilptr "k8s.io/utils/ptr"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// rolesFromDocs reads every Role of docs/rbac.md (its yaml blocks), by metadata.name.
func rolesFromDocs(t *testing.T) map[string]*rbacv1.Role {
	t.Helper()
	env := testbed.Require(t)
	b, err := os.ReadFile(filepath.Join(env.Root, "docs", "rbac.md"))
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]*rbacv1.Role{}
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(b, -1) {
		var role rbacv1.Role
		if err := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(m[1]), 4096).Decode(&role); err != nil {
			t.Fatalf("a yaml block of docs/rbac.md: %v", err)
		}
		if role.Kind != "Role" || role.Name == "" || len(role.Rules) == 0 {
			t.Fatalf("a yaml block of docs/rbac.md is not a named Role: %+v", role)
		}
		roles[role.Name] = &role
	}
	return roles
}

// ruleKey names a rule by its API groups and resources ("apps/statefulsets", "/pods/exec").
func ruleKey(r rbacv1.PolicyRule) string {
	return strings.Join(r.APIGroups, ",") + "/" + strings.Join(r.Resources, ",")
}

// denial is a command that must fail without a rule, and the permission its message must name
// (verb and resource as "you are not allowed to VERB RESOURCE in namespace" says them).
type denial struct {
	args     []string
	verb     string
	resource string
}

// rbacUse is one Role of docs/rbac.md: for each of its rules (by ruleKey), a command that fails
// without it.
type rbacUse struct {
	role    string
	without map[string]denial
}

// The shared database of the test, created by the admin: the CI and backup Roles use it, and
// every run without a rule fails on it before writing anything.
const rbacDB = "app"

var rbacUses = []rbacUse{
	{role: "stackblaze-developer", without: map[string]denial{
		"apps/statefulsets":                            {[]string{"db", "list"}, "list", "statefulsets.apps"},
		"apps/statefulsets/scale":                      {[]string{"db", "scale", rbacDB, "--replicas", "1"}, "get", "statefulsets/scale.apps"},
		"apps/deployments":                             {[]string{"db", "status", rbacDB}, "list", "deployments.apps"},
		"/services,configmaps":                         {[]string{"db", "create", rbacDB}, "get", "services"},
		"/secrets":                                     {[]string{"db", "run", rbacDB, "--", "true"}, "get", "secrets"},
		"networking.k8s.io/networkpolicies":            {[]string{"db", "create", rbacDB}, "get", "networkpolicies.networking.k8s.io"},
		"batch/cronjobs":                               {[]string{"db", "create", rbacDB}, "get", "cronjobs.batch"},
		"/serviceaccounts":                             {[]string{"db", "create", rbacDB}, "get", "serviceaccounts"},
		"rbac.authorization.k8s.io/roles,rolebindings": {[]string{"db", "create", rbacDB}, "get", "roles.rbac.authorization.k8s.io"},
		"/persistentvolumeclaims":                      {[]string{"db", "status", rbacDB}, "get", "persistentvolumeclaims"},
		"coordination.k8s.io/leases":                   {[]string{"db", "migrate", rbacDB, "--", "true"}, "get", "leases.coordination.k8s.io"},
		"/pods":                                        {[]string{"db", "list"}, "list", "pods"},
		"/pods/portforward":                            {[]string{"db", "run", rbacDB, "--", "true"}, "create", "pods/portforward"},
		"/pods/exec":                                   {[]string{"db", "backup", "list", rbacDB}, "create", "pods/exec"},
		"/pods/log":                                    {[]string{"db", "upgrade", rbacDB, "--version", "17", "--check"}, "get", "pods/log"},
	}},
	{role: "stackblaze-ci", without: map[string]denial{
		"apps/statefulsets":          {[]string{"db", "list"}, "list", "statefulsets.apps"},
		"apps/deployments":           {[]string{"db", "status", rbacDB}, "list", "deployments.apps"},
		"/pods":                      {[]string{"db", "list"}, "list", "pods"},
		"/persistentvolumeclaims":    {[]string{"db", "status", rbacDB}, "get", "persistentvolumeclaims"},
		"/secrets":                   {[]string{"db", "run", rbacDB, "--", "true"}, "get", "secrets"},
		"/pods/portforward":          {[]string{"db", "run", rbacDB, "--", "true"}, "create", "pods/portforward"},
		"coordination.k8s.io/leases": {[]string{"db", "migrate", rbacDB, "--", "true"}, "get", "leases.coordination.k8s.io"},
	}},
	{role: "mydb-backup", without: map[string]denial{
		"apps/statefulsets": {[]string{"db", "backup", "create", rbacDB}, "get", "statefulsets.apps"},
		"/pods/exec":        {[]string{"db", "backup", "create", rbacDB}, "create", "pods/exec"},
	}},
}

// forDatabase is the backup Role of docs/rbac.md (written for database mydb) for database name.
func forDatabase(role *rbacv1.Role, name string) *rbacv1.Role {
	r := role.DeepCopy()
	for i := range r.Rules {
		for j, n := range r.Rules[i].ResourceNames {
			r.Rules[i].ResourceNames[j] = strings.Replace(n, "mydb", name, 1)
		}
	}
	return r
}

// boundAccount is a ServiceAccount bound to a Role, with a kubeconfig holding a token for it,
// and a permission the Role grants (to see the binding take effect).
type boundAccount struct {
	name       string
	kubeconfig string
	allowed    authorizationv1.ResourceAttributes
}

// bindAccount makes ServiceAccount name, a Role name with role's rules and a RoleBinding between
// them in ns, and a kubeconfig with a token for the account.
func bindAccount(t *testing.T, ns, name string, role *rbacv1.Role) boundAccount {
	t.Helper()
	kc := serviceAccountKubeconfig(t, ns, name, role)
	last := role.Rules[len(role.Rules)-1]
	res, sub, _ := strings.Cut(last.Resources[0], "/")
	a := authorizationv1.ResourceAttributes{Namespace: ns, Verb: last.Verbs[0], Group: last.APIGroups[0], Resource: res, Subresource: sub}
	if len(last.ResourceNames) > 0 {
		a.Name = last.ResourceNames[0]
	}
	return boundAccount{name: name, kubeconfig: kc, allowed: a}
}

// waitBound waits until the API server authorizes the account for what its Role grants: RBAC
// takes effect once the API server's informers have seen the Role and the RoleBinding.
func waitBound(t *testing.T, a boundAccount) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", a.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testbed.Context(t, time.Minute)
	for {
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a.allowed}}, metav1.CreateOptions{})
		if err == nil && r.Status.Allowed {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: the binding never took effect (%v)", a.name, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runAs runs the stackblaze binary as the account of kubeconfig, in namespace ns (CI set).
func runAs(t *testing.T, kubeconfig, ns string, args ...string) testbed.Result {
	t.Helper()
	res := testbed.RunCommand(t, commandAs(t, kubeconfig, ns, args...))
	t.Logf("stackblaze %s -> exit %d\n%s", strings.Join(args, " "), res.Code, res.Stderr)
	return res
}

func commandAs(t *testing.T, kubeconfig, ns string, args ...string) *exec.Cmd {
	t.Helper()
	env := testbed.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, env.Binary(t), append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...)...)
	cmd.Env = append(os.Environ(), "CI=true", "NO_COLOR=1", "STACKBLAZE_DATABASE=", "KUBECONFIG=", "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	cmd.Dir = t.TempDir()
	return cmd
}

func mustRun(t *testing.T, kubeconfig, ns string, args ...string) testbed.Result {
	t.Helper()
	r := runAs(t, kubeconfig, ns, args...)
	if r.Code != 0 {
		t.Fatalf("stackblaze %s: exit %d, want 0:\n%s\n%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r
}

// TestE2ERBACRoles proves docs/rbac.md: for each of its Roles, a ServiceAccount bound to exactly
// that Role runs every command of its use, and for each rule, an account bound to the Role
// without that rule fails a command with exit code 4 and a message naming the missing
// permission: every rule is needed.
func TestE2ERBACRoles(t *testing.T) {
	t.Parallel()
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	roles := rolesFromDocs(t)

	// The doc and the test's table agree: the same Roles, a denial for every rule and a rule
	// for every denial.
	var names []string
	for n := range roles {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"mydb-backup", "stackblaze-ci", "stackblaze-developer"}; !slices.Equal(names, want) {
		t.Fatalf("docs/rbac.md has the Roles %v, want %v", names, want)
	}
	for _, u := range rbacUses {
		seen := map[string]bool{}
		for _, r := range roles[u.role].Rules {
			k := ruleKey(r)
			if _, ok := u.without[k]; !ok || seen[k] {
				t.Errorf("%s: rule %s has no command that needs it in the test (or comes twice)", u.role, k)
			}
			seen[k] = true
		}
		for k := range u.without {
			if !seen[k] {
				t.Errorf("%s: the test expects a rule %s that docs/rbac.md does not have", u.role, k)
			}
		}
	}
	// The backup Role of the doc is the one create writes.
	var code []rbacv1.PolicyRule
	for _, r := range database.BackupRoleRules("mydb") {
		code = append(code, rbacv1.PolicyRule{APIGroups: r.APIGroups, Resources: r.Resources, Verbs: r.Verbs, ResourceNames: r.ResourceNames})
	}
	if got, _ := json.Marshal(roles["mydb-backup"].Rules); string(got) != string(mustJSON(t, code)) {
		t.Fatalf("docs/rbac.md's mydb-backup Role:\n%s\ndatabase.BackupRoleRules(\"mydb\"):\n%s", got, mustJSON(t, code))
	}
	if t.Failed() {
		t.FailNow()
	}

	// Every account up front, so that the bindings take effect while the database starts.
	full := map[string]boundAccount{}
	without := map[string][]boundAccount{}
	var rulesOf = map[string][]rbacv1.PolicyRule{}
	for i, u := range rbacUses {
		role := roles[u.role]
		if u.role == "mydb-backup" {
			role = forDatabase(role, rbacDB)
		}
		rulesOf[u.role] = role.Rules
		full[u.role] = bindAccount(t, ns, fmt.Sprintf("role%d", i), role)
		for j := range role.Rules {
			less := role.DeepCopy()
			less.Rules = slices.Delete(less.Rules, j, j+1)
			without[u.role] = append(without[u.role], bindAccount(t, ns, fmt.Sprintf("role%d-without-rule%d", i, j), less))
		}
	}

	// The admin makes the shared database and an app Deployment to attach to.
	var ready sync.WaitGroup
	ready.Add(1)
	var appErr string
	go func() {
		defer ready.Done()
		r := env.Run(t, ns, "db", "create", rbacDB, "--version", "15", "--timeout", "4m")
		if r.Code != 0 {
			appErr = r.Stderr
		}
	}()
	web := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: utilptr.To(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: utilptr.To(int64(0)), Containers: []corev1.Container{{
					Name: "web", Image: database.DefaultImageRepository + ":17", Command: []string{"sleep", "infinity"}}}},
			},
		},
	}
	if _, err := env.Client.AppsV1().Deployments(ns).Create(context.Background(), web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, a := range full {
		waitBound(t, a)
	}
	for _, as := range without {
		for _, a := range as {
			waitBound(t, a)
		}
	}
	waitApp := func(t *testing.T) {
		t.Helper()
		ready.Wait()
		if appErr != "" {
			t.Fatalf("db create %s as the admin:\n%s", rbacDB, appErr)
		}
	}

	t.Run("stackblaze-developer", func(t *testing.T) {
		t.Parallel()
		developerRun(t, env, ns, full["stackblaze-developer"].kubeconfig)
	})
	t.Run("stackblaze-ci", func(t *testing.T) {
		t.Parallel()
		waitApp(t)
		kc := full["stackblaze-ci"].kubeconfig
		r := mustRun(t, kc, ns, "db", "list", "-o", "json")
		if !strings.Contains(r.Stdout, `"`+rbacDB+`"`) {
			t.Errorf("list: %s", r.Stdout)
		}
		mustRun(t, kc, ns, "db", "status", rbacDB)
		mustRun(t, kc, ns, "db", "run", rbacDB, "--", "psql", "-X", "-At", "-c", "select 1")
		mustRun(t, kc, ns, "db", "migrate", rbacDB, "--", "true")
		r = runAs(t, kc, "default", "db", "list")
		if r.Code != cmdutil.ExitForbidden || !strings.Contains(r.Stderr, "you are not allowed to list statefulsets.apps in namespace default") {
			t.Errorf("list in another namespace: exit %d %s", r.Code, r.Stderr)
		}
	})
	t.Run("mydb-backup", func(t *testing.T) {
		t.Parallel()
		waitApp(t)
		// What the CronJob's pod runs, with the job's Role.
		mustRun(t, full["mydb-backup"].kubeconfig, ns, "db", "backup", "create", rbacDB)
	})
	t.Run("without", func(t *testing.T) {
		t.Parallel()
		waitApp(t)
		for _, u := range rbacUses {
			for j, rule := range rulesOf[u.role] {
				d := u.without[ruleKey(rule)]
				r := runAs(t, without[u.role][j].kubeconfig, ns, d.args...)
				want := "you are not allowed to " + d.verb + " " + d.resource + " in namespace " + ns
				if r.Code != cmdutil.ExitForbidden || !strings.Contains(r.Stderr, want) {
					t.Errorf("%s without rule %s: %v: exit %d, want 4 and %q:\n%s", u.role, ruleKey(rule), d.args, r.Code, want, r.Stderr)
				}
			}
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// developerRun runs every command as the developer's account, on a database of its own.
func developerRun(t *testing.T, env *testbed.Env, ns, kc string) {
	const db, cp = "dev", "dev-copy"
	must := func(args ...string) testbed.Result { t.Helper(); return mustRun(t, kc, ns, args...) }
	sql := func(sql string) string {
		t.Helper()
		out, err := env.Exec(t, ns, db+"-0", "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	must("db", "create", db, "--version", "15", "--plan", "hobby", "--storage", "1Gi", "--timeout", "4m")
	must("db", "update", db, "--plan", "standard")
	must("db", "upgrade", db, "--version", "17", "--check")
	must("db", "resize", db, "--storage", "2Gi")
	// Autogrow's Role grants only what the developer holds.
	must("db", "resize", db, "--auto", "--max", "4Gi")
	must("db", "resize", db, "--auto=false")
	must("db", "list")
	must("db", "status", db)
	must("db", "logs", db, "--tail", "5")
	must("db", "insights", db)
	must("db", "dump", db, "-f", filepath.Join(t.TempDir(), "dev.dump"))
	must("db", "attach", db, "--to", "deployment/web")
	must("db", "migrate", db, "--", "true")
	must("db", "run", db, "--", "psql", "-X", "-At", "-c", "select 1")
	must("db", "connect", db, "--", "-X", "-At", "-c", "select 1")

	// proxy: a long-lived tunnel; its first line on stdout is the connection string.
	p := commandAs(t, kc, ns, "db", "proxy", db)
	stdout, err := p.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var perr strings.Builder
	p.Stderr = &perr
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		_ = p.Process.Kill()
		_ = p.Wait()
		t.Fatalf("proxy printed no connection string: %v\n%s", err, perr.String())
	}
	_ = p.Process.Signal(syscall.SIGINT)
	if err := p.Wait(); err != nil {
		t.Fatalf("proxy after Ctrl-C: %v\n%s", err, perr.String())
	}

	must("db", "rotate-credentials", db, "--yes")
	must("db", "detach", db, "--from", "deployment/web")

	sql("create table marker (v text)")
	must("db", "backup", "create", db)
	must("db", "backup", "schedule", db, "--at", "02:30")
	var list struct {
		Backups []struct {
			ID string `json:"id"`
		} `json:"backups"`
		Window *struct {
			Earliest time.Time `json:"earliest"`
		} `json:"recoverableWindow"`
	}
	if err := json.Unmarshal([]byte(must("db", "backup", "list", db, "-o", "json").Stdout), &list); err != nil || len(list.Backups) == 0 || list.Window == nil {
		t.Fatalf("backup list: %v", err)
	}
	// A target inside the window (after the backup's end), with a commit after it in archived
	// WAL, so that recovery stops there.
	ctx := testbed.Context(t, 2*time.Minute)
	until := func(cond, what string) {
		t.Helper()
		for sql(cond) != "t" {
			select {
			case <-ctx.Done():
				t.Fatal(what)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	earliest := list.Window.Earliest.UTC().Format(time.RFC3339Nano)
	until(`select clock_timestamp() > '`+earliest+`'`, "the server's clock did not pass the backup's end")
	target := sql(`select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`)
	sql("insert into marker values ('after the target')")
	sql("select pg_switch_wal()")
	until(`select coalesce(last_archived_time > '`+target+`', false) from pg_stat_archiver`, "the WAL after the target was not archived")
	must("db", "restore", db, "--to-time", target, "--yes")
	if got := sql("select count(*) from marker"); got != "0" {
		t.Errorf("after restore --to-time: %s rows, want 0", got)
	}
	must("db", "restore", db, "--backup", list.Backups[0].ID, "--into", cp)
	must("db", "scale", db, "--replicas", "0")
	must("db", "scale", db, "--replicas", "1")
	must("db", "delete", cp, "--yes", "--delete-data")
	must("db", "delete", db, "--yes", "--delete-data")
}
