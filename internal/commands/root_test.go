package commands_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/stackblaze/stackblaze/internal/commands"
	"github.com/stackblaze/stackblaze/internal/commands/cmdtest"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
)

func run(e *cmdtest.Env, args ...string) int {
	return commands.Run(context.Background(), e.F, args)
}

// Input errors exit 2, name the allowed values and never build a client.
func TestUsageErrorsNeverTouchTheCluster(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"db", "create", "Bad_Name"}, "lowercase letters"},
		{[]string{"db", "create", strings.Repeat("a", 41)}, "at most 40"},
		{[]string{"db", "create", "1db"}, "starting with a letter"},
		{[]string{"db", "create", "mydb", "--version", "14"}, "use 15, 16, 17 or 18"},
		{[]string{"db", "create", "mydb", "--storage", "1000Gi"}, "from 1Gi to 500Gi"},
		{[]string{"db", "create", "mydb", "--storage", "0Gi"}, "from 1Gi to 500Gi"},
		{[]string{"db", "create", "mydb", "--storage", "10TB"}, "from 1Gi to 500Gi"},
		{[]string{"db", "create", "mydb", "--plan", "gold"}, "use one of hobby, standard, pro"},
		{[]string{"db", "create"}, "needs a database name"},
		{[]string{"db", "create", "a", "b"}, "takes one database name"},
		{[]string{"db", "create", "mydb", "--bogus"}, "unknown flag"},
		{[]string{"db", "create", "mydb", "--wait", "--no-wait"}, "contradict"},
		{[]string{"db", "create", "mydb", "--timeout", "-1s"}, "a negative timeout: use a duration such as 30s, 5m or 1h, or 0 for no limit"},
		{[]string{"db", "delete", "mydb", "--yes", "--timeout", "-5m"}, "a negative timeout"},
		{[]string{"db", "scale", "mydb", "--replicas", "0", "--timeout", "-1s"}, "a negative timeout"},
		{[]string{"db", "proxy", "mydb", "--timeout", "soon"}, "not a duration: use one such as 30s"},
		{[]string{"db", "migrate", "mydb", "--timeout", "-1s", "--", "true"}, "a negative timeout"},
		{[]string{"db", "rotate-credentials", "mydb", "--yes", "--timeout", "-1s"}, "a negative timeout"},
		{[]string{"db", "status"}, "needs a database name"},
		{[]string{"db", "status", "UPPER"}, "not valid"},
		{[]string{"db", "delete", "mydb"}, "without confirmation"},
		{[]string{"db", "scale", "mydb"}, "--replicas is required"},
		{[]string{"db", "scale", "mydb", "--replicas", "3"}, "use 0 (stop) or 1 (start)"},
		{[]string{"db", "list", "extra"}, "takes no arguments"},
		{[]string{"db"}, "needs a command"},
		{[]string{"db", "frobnicate"}, "unknown command"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"-o", "yaml", "db", "list"}, "use text or json"},
		{[]string{"help", "nothing-here"}, "unknown help topic"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			e := cmdtest.New(t, false, nil, "shop")
			if code := run(e, tc.args...); code != cmdutil.ExitUsage {
				t.Errorf("exit %d, want 2; stderr:\n%s", code, e.ErrOut)
			}
			if !strings.Contains(e.ErrOut.String(), tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, e.ErrOut)
			}
			if e.Out.Len() != 0 {
				t.Errorf("stdout is not empty: %q", e.Out)
			}
		})
	}
}

func TestVersionAndHelpNeverBuildAClient(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"version", "-o", "json"}, {"--help"}, {"db", "create", "--help"}, {"help", "db", "create"}, {"help", "exit-codes"}, {}} {
		e := cmdtest.New(t, false, nil, "")
		e.Vars["KUBECONFIG"] = "/does/not/exist"
		if code := run(e, args...); code != 0 {
			t.Errorf("%v: exit %d: %s", args, code, e.ErrOut)
		}
		if e.Out.Len() == 0 {
			t.Errorf("%v printed nothing", args)
		}
	}
	e := cmdtest.New(t, false, nil, "")
	run(e, "version", "-o", "json")
	var v cmdutil.BuildInfo
	if err := json.Unmarshal(e.Out.Bytes(), &v); err != nil || v.Version != "v0.0.0-test" {
		t.Errorf("version JSON %q: %v", e.Out, err)
	}
}

func TestHelpExitCodesIsTheTable(t *testing.T) {
	t.Parallel()
	e := cmdtest.New(t, false, nil, "")
	if code := run(e, "help", "exit-codes", "-o", "json"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var got []cmdutil.ExitCodeDoc
	if err := json.Unmarshal(e.Out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[int]bool{0: true, 1: true, 2: true, 3: true, 4: true, 5: true, 6: true, 7: true, 8: true, 9: true, 10: true, 130: true}
	for _, c := range got {
		delete(want, c.Code)
	}
	if len(want) != 0 || len(got) != 12 {
		t.Errorf("exit codes %v, missing %v", got, want)
	}
	e = cmdtest.New(t, false, nil, "")
	run(e, "help", "exit-codes")
	for _, c := range cmdutil.ExitCodes {
		if !strings.Contains(e.Out.String(), fmt.Sprintf("  %d ", c.Code)) || !strings.Contains(e.Out.String(), c.Meaning) {
			t.Errorf("text lacks code %d", c.Code)
		}
	}
}

func allowAccessReviews(cs *fake.Clientset) {
	accessReviews(cs, func(*authorizationv1.ResourceAttributes) bool { return true })
}

func accessReviews(cs *fake.Clientset, allow func(*authorizationv1.ResourceAttributes) bool) {
	cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		r.Status.Allowed = allow(r.Spec.ResourceAttributes)
		return true, r, nil
	})
}

func TestNotFoundExit3(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"db", "status", "nope"}, {"db", "delete", "nope", "--yes"}, {"db", "scale", "nope", "--replicas", "0"}} {
		e := cmdtest.New(t, false, fake.NewClientset(), "shop")
		if code := run(e, args...); code != cmdutil.ExitNotFound {
			t.Errorf("%v: exit %d, want 3: %s", args, code, e.ErrOut)
		}
		if !strings.Contains(e.ErrOut.String(), "database nope not found in namespace shop") {
			t.Errorf("%v: stderr %s", args, e.ErrOut)
		}
	}
}

func TestForbiddenExit4(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset()
	cs.PrependReactor("list", "statefulsets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "statefulsets"}, "",
			fmt.Errorf(`User "system:serviceaccount:shop:ci" cannot list resource "statefulsets" in API group "apps" in the namespace "shop"`))
	})
	e := cmdtest.New(t, false, cs, "shop")
	if code := run(e, "db", "list"); code != cmdutil.ExitForbidden {
		t.Errorf("exit %d, want 4", code)
	}
	if !strings.Contains(e.ErrOut.String(), "you are not allowed to list statefulsets.apps in namespace shop") ||
		!strings.Contains(e.ErrOut.String(), "docs/rbac.md") {
		t.Errorf("stderr:\n%s", e.ErrOut)
	}
}

func TestCreateForbiddenByAccessReview(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset()
	accessReviews(cs, func(a *authorizationv1.ResourceAttributes) bool { return a.Resource != "statefulsets" })
	e := cmdtest.New(t, false, cs, "shop")
	if code := run(e, "db", "create", "mydb", "--no-wait"); code != cmdutil.ExitForbidden {
		t.Errorf("exit %d, want 4: %s", code, e.ErrOut)
	}
	if !strings.Contains(e.ErrOut.String(), "database mydb: you are not allowed to create statefulsets.apps in namespace shop") {
		t.Errorf("stderr:\n%s", e.ErrOut)
	}
	for _, a := range cs.Actions() {
		if a.GetVerb() == "patch" || (a.GetVerb() == "create" && a.GetResource().Resource != "selfsubjectaccessreviews") {
			t.Errorf("wrote to the cluster: %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}

func TestCreateConflictExit6(t *testing.T) {
	t.Parallel()
	cs := fake.NewClientset()
	allowAccessReviews(cs)
	e := cmdtest.New(t, false, cs, "shop")
	if code := run(e, "db", "create", "mydb", "--storage", "1Gi", "--no-wait"); code != 0 {
		t.Fatalf("first create: exit %d: %s", code, e.ErrOut)
	}
	e2 := cmdtest.New(t, false, cs, "shop")
	if code := run(e2, "db", "create", "mydb", "--storage", "2Gi", "--no-wait"); code != cmdutil.ExitConflict {
		t.Errorf("exit %d, want 6: %s", code, e2.ErrOut)
	}
	if !strings.Contains(e2.ErrOut.String(), "storage: 1Gi in the cluster, 2Gi requested") {
		t.Errorf("stderr:\n%s", e2.ErrOut)
	}
	e3 := cmdtest.New(t, false, cs, "shop")
	if code := run(e3, "db", "create", "mydb", "--storage", "1G", "--no-wait", "-o", "json"); code != 0 {
		t.Fatalf("same create: exit %d: %s", code, e3.ErrOut)
	}
	var res struct{ Changed bool }
	if err := json.Unmarshal(e3.Out.Bytes(), &res); err != nil || res.Changed {
		t.Errorf("second create changed=%v (%v): %s", res.Changed, err, e3.Out)
	}
	if !strings.Contains(e3.ErrOut.String(), "storage: 1G taken as 1Gi") || !strings.Contains(e3.ErrOut.String(), "Nothing changed") {
		t.Errorf("stderr:\n%s", e3.ErrOut)
	}
}

func writeKubeconfig(t *testing.T, server string, contexts ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: %s\nusers:\n- name: u\n  user:\n    token: abc\ncontexts:\n", server)
	for _, c := range contexts {
		fmt.Fprintf(&b, "- name: %s\n  context:\n    cluster: c\n    user: u\n    namespace: shop\n", c)
	}
	fmt.Fprintf(&b, "current-context: %s\n", contexts[0])
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func realKube(e *cmdtest.Env) {
	e.F.Kube = cmdutil.KubeFromConfig(e.F, "stackblaze-test")
}

func TestUnreachableExit5(t *testing.T) {
	t.Parallel()
	kc := writeKubeconfig(t, "https://127.0.0.1:1", "dev")
	e := cmdtest.New(t, false, nil, "")
	realKube(e)
	if code := run(e, "db", "list", "--kubeconfig", kc); code != cmdutil.ExitUnreachable {
		t.Errorf("exit %d, want 5: %s", code, e.ErrOut)
	}
	if !strings.Contains(e.ErrOut.String(), "cannot reach the cluster at https://127.0.0.1:1") || !strings.Contains(e.ErrOut.String(), "connection refused") {
		t.Errorf("stderr:\n%s", e.ErrOut)
	}

	kc = writeKubeconfig(t, "https://no-such-host.invalid:6443", "dev")
	e = cmdtest.New(t, false, nil, "")
	realKube(e)
	if code := run(e, "db", "status", "mydb", "--kubeconfig", kc); code != cmdutil.ExitUnreachable {
		t.Errorf("exit %d, want 5: %s", code, e.ErrOut)
	}
	if !strings.Contains(e.ErrOut.String(), "no-such-host.invalid") {
		t.Errorf("stderr:\n%s", e.ErrOut)
	}
}

func TestUnknownContextListsContexts(t *testing.T) {
	t.Parallel()
	kc := writeKubeconfig(t, "https://127.0.0.1:1", "dev", "prod")
	e := cmdtest.New(t, false, nil, "")
	realKube(e)
	code := run(e, "db", "list", "--kubeconfig", kc, "--context", "staging")
	if code != cmdutil.ExitUsage {
		t.Errorf("exit %d, want 2", code)
	}
	if !strings.Contains(e.ErrOut.String(), `context "staging" is not in the kubeconfig`) || !strings.Contains(e.ErrOut.String(), "available contexts: dev, prod") {
		t.Errorf("stderr:\n%s", e.ErrOut)
	}
}

func TestNamespaceFromContextAndFlag(t *testing.T) {
	t.Parallel()
	kc := writeKubeconfig(t, "https://127.0.0.1:1", "dev")
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "shop"},
		{[]string{"-n", "other"}, nil, "other"},
		{nil, map[string]string{"STACKBLAZE_NAMESPACE": "fromenv"}, "fromenv"},
		{[]string{"--namespace", "flag"}, map[string]string{"STACKBLAZE_NAMESPACE": "fromenv"}, "flag"},
	} {
		e := cmdtest.New(t, false, nil, "")
		for k, v := range tc.env {
			e.Vars[k] = v
		}
		realKube(e)
		var got string
		e.F.OpenTunnel = nil
		run(e, append([]string{"version", "--kubeconfig", kc}, tc.args...)...)
		c, err := e.F.Kube()
		if err != nil {
			t.Fatal(err)
		}
		got = c.Namespace
		if got != tc.want {
			t.Errorf("%v %v: namespace %q, want %q", tc.args, tc.env, got, tc.want)
		}
	}
	_ = database.Port
}

func mustConvert(from, to any) {
	b, err := json.Marshal(from)
	if err != nil {
		panic(err)
	}
	if err := json.Unmarshal(b, to); err != nil {
		panic(err)
	}
}

func TestDeleteAsksOnATerminal(t *testing.T) {
	t.Parallel()
	objs := clusterDatabase("orders", "hobby", 16, "1Gi", false, 0, time.Hour, 0)

	cs := fake.NewClientset(objs...)
	e := cmdtest.New(t, true, cs, "shop")
	e.In.WriteString("n\n")
	if code := run(e, "db", "delete", "orders"); code != cmdutil.ExitError {
		t.Errorf("answer n: exit %d", code)
	}
	if !strings.Contains(e.ErrOut.String(), "Delete database orders in namespace shop (the volume is kept)? [y/N]") {
		t.Errorf("prompt:\n%s", e.ErrOut)
	}
	if _, err := cs.AppsV1().StatefulSets("shop").Get(context.Background(), "orders", metav1.GetOptions{}); err != nil {
		t.Errorf("answer n deleted the database: %v", err)
	}

	e = cmdtest.New(t, true, cs, "shop")
	e.In.WriteString("y\n")
	if code := run(e, "db", "delete", "orders", "--no-wait"); code != 0 {
		t.Errorf("answer y: exit %d: %s", code, e.ErrOut)
	}
	if _, err := cs.AppsV1().StatefulSets("shop").Get(context.Background(), "orders", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("answer y did not delete: %v", err)
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims("shop").Get(context.Background(), "data-orders-0", metav1.GetOptions{}); err != nil {
		t.Errorf("the volume claim was deleted without --delete-data: %v", err)
	}

	// On a terminal but with CI set: refuse without --yes.
	e = cmdtest.New(t, true, fake.NewClientset(clusterDatabase("orders", "hobby", 16, "1Gi", false, 0, time.Hour, 0)...), "shop")
	e.Vars["CI"] = "true"
	if code := run(e, "db", "delete", "orders"); code != cmdutil.ExitUsage || !strings.Contains(e.ErrOut.String(), "CI is set") {
		t.Errorf("CI without --yes: exit %d: %s", code, e.ErrOut)
	}
}
