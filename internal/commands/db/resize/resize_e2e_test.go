package resize_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

func claimSize(t *testing.T, env *testbed.Env, ns, claim string) (spec, status string) {
	t.Helper()
	c, err := env.Client.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), claim, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Spec.Resources.Requests[corev1.ResourceStorage], c.Status.Capacity[corev1.ResourceStorage]
	return a.String(), b.String()
}

// db resize grows the volumes online: an application attached to the database, writing a row every
// 50ms through the Service, loses no row it saw committed and sees no failure (the database's pod
// is neither replaced nor restarted); the claims, the StatefulSet's claim templates and the
// filesystem in the container all have the new size, and a stop and start keeps it and the rows.
func TestE2EResizeOnline(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	const db = "grow"
	if r := env.Run(t, ns, "db", "create", db); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	// writes has no key: a row written twice would show.
	env.SQL(t, ns, db, "create table t (n int); insert into t select generate_series(1, 1000); create table writes (n int)")
	pods := env.Client.CoreV1().Pods(ns)
	before, err := pods.Get(context.Background(), database.PodName(db), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env.StartWriter(t, ns, db, "writes", database.DefaultImageRepository+":17")
	env.FollowWriter(t, ns, func(w testbed.WriterLog) bool { return len(w.Committed) >= 20 })
	start := time.Now()
	r := env.Run(t, ns, "db", "resize", db, "--storage", "2Gi", "-o", "json")
	if r.Code != 0 {
		t.Fatalf("resize: exit %d\n%s", r.Code, r.Stderr)
	}
	end := time.Now()
	var res struct {
		FilesystemBytes int64 `json:"filesystemBytes"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || res.FilesystemBytes < 19*(1<<30)/10 {
		t.Errorf("resize -o json: %v %s", err, r.Stdout)
	}
	// The writer goes on after the resize: up to its first commit after the end, then 20 more.
	atEnd := env.FollowWriter(t, ns, func(w testbed.WriterLog) bool { return w.Last.After(end) })
	seen := env.FollowWriter(t, ns, func(w testbed.WriterLog) bool { return len(w.Committed) >= len(atEnd.Committed)+20 })
	env.StopWriter(t, ns)
	var beforeStart, afterEnd, last int
	for n, at := range seen.Committed {
		if at.Before(start) {
			beforeStart++
		}
		if at.After(end) {
			afterEnd++
		}
		last = max(last, n)
	}
	t.Logf("the writer committed %d rows: %d before the resize, %d during it (%s), %d after it",
		len(seen.Committed), beforeStart, len(seen.Committed)-beforeStart-afterEnd, end.Sub(start).Round(time.Millisecond), afterEnd)
	if beforeStart == 0 || afterEnd < 20 {
		t.Errorf("the writer committed %d rows before the resize and %d after it, want some before and 20 after", beforeStart, afterEnd)
	}
	if len(seen.Failed) > 0 {
		t.Errorf("the writer saw %d inserts fail during the resize (rows %v)", len(seen.Failed), seen.Failed)
	}
	// Every row the writer saw committed is there once; the writer, which writes one row after
	// the other, may have committed a few more after the last line read, before it stopped.
	rows := env.WriterRows(t, ns, db, "writes")
	var missing, twice, unlogged []int
	for n := range seen.Committed {
		if rows[n] == 0 {
			missing = append(missing, n)
		}
	}
	for n, k := range rows {
		if k > 1 {
			twice = append(twice, n)
		}
		if _, ok := seen.Committed[n]; !ok && n <= last {
			unlogged = append(unlogged, n)
		}
	}
	slices.Sort(missing)
	slices.Sort(twice)
	slices.Sort(unlogged)
	if len(missing) > 0 {
		t.Errorf("rows the writer saw committed are missing after the resize: %v", missing)
	}
	if len(twice) > 0 {
		t.Errorf("rows written more than once: %v", twice)
	}
	if len(unlogged) > 0 {
		t.Errorf("rows in the table before the writer's last logged commit (%d) that it did not see committed: %v", last, unlogged)
	}
	after, err := pods.Get(context.Background(), database.PodName(db), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.UID != before.UID || restarts(after) != restarts(before) {
		t.Errorf("the database's pod was replaced or restarted by the resize: uid %s → %s, restarts %d → %d",
			before.UID, after.UID, restarts(before), restarts(after))
	}
	for claim, want := range map[string]string{database.PVCName(db): "2Gi", database.BackupPVCName(db): "4Gi"} {
		if spec, status := claimSize(t, env, ns, claim); spec != want || status != want {
			t.Errorf("claim %s: spec %s, status %s, want %s", claim, spec, status, want)
		}
	}
	sts, err := env.Client.AppsV1().StatefulSets(ns).Get(context.Background(), db, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tpl := range sts.Spec.VolumeClaimTemplates {
		q := tpl.Spec.Resources.Requests[corev1.ResourceStorage]
		if want := map[string]string{"data": "2Gi", "backup": "4Gi"}[tpl.Name]; q.String() != want {
			t.Errorf("the StatefulSet's claim template %s asks %s, want %s", tpl.Name, q.String(), want)
		}
	}
	if sts.Annotations[database.AnnotationStorage] != "2Gi" {
		t.Errorf("storage annotation %q", sts.Annotations[database.AnnotationStorage])
	}
	df := strings.Fields(mustExec(t, env, ns, database.PodName(db), "df", "-B1", "--output=size", database.DataMountPath))
	if n, _ := strconv.ParseInt(df[len(df)-1], 10, 64); n < 19*(1<<30)/10 {
		t.Errorf("the data filesystem in the container has %d bytes", n)
	}
	// A stop and start: the new pod gets the grown volume with every row, and create agrees with
	// the size.
	for _, n := range []string{"0", "1"} {
		if r := env.Run(t, ns, "db", "scale", db, "--replicas", n); r.Code != 0 {
			t.Fatalf("scale %s: exit %d\n%s", n, r.Code, r.Stderr)
		}
	}
	if got := env.SQL(t, ns, db, "select count(*) from t"); got != "1000" {
		t.Errorf("rows of t after a restart: %s, want 1000", got)
	}
	if got := env.WriterRows(t, ns, db, "writes"); !maps.Equal(got, rows) {
		t.Errorf("the writer's rows after a restart: %d, want the %d before it", len(got), len(rows))
	}
	df = strings.Fields(mustExec(t, env, ns, database.PodName(db), "df", "-B1", "--output=size", database.DataMountPath))
	if n, _ := strconv.ParseInt(df[len(df)-1], 10, 64); n < 19*(1<<30)/10 {
		t.Errorf("after a restart the data filesystem in the container has %d bytes", n)
	}
	if r := env.Run(t, ns, "db", "create", db, "--storage", "2Gi"); r.Code != 0 {
		t.Errorf("create with the new size: exit %d\n%s", r.Code, r.Stderr)
	}
}

// restarts is how many times the pod's containers restarted.
func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

func mustExec(t *testing.T, env *testbed.Env, ns, pod string, argv ...string) string {
	t.Helper()
	return env.MustExec(t, ns, pod, argv...)
}

// Shrinking, a size out of range and a StorageClass that does not allow expansion: exit 2 and
// nothing changed.
func TestE2EResizeRefused(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	ctx := context.Background()
	// A StorageClass of the test bed's provisioner without expansion, for database "fixed":
	// its claims are made first, with the database's labels, as the StatefulSet would name them.
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fixed-" + ns}, Provisioner: "testbed.stackblaze.io/local",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer), AllowVolumeExpansion: ptr.To(false)}
	if _, err := env.Client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.StorageV1().StorageClasses().Delete(context.Background(), sc.Name, metav1.DeleteOptions{})
	})
	for claim, size := range map[string]string{database.PVCName("fixed"): "1Gi", database.BackupPVCName("fixed"): "2Gi"} {
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: claim, Labels: database.Labels("fixed")},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &sc.Name, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}}}}
		if _, err := env.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"create", "fixed"}, {"create", "big", "--storage", "2Gi"}} {
		if r := env.Run(t, ns, append([]string{"db"}, args...)...); r.Code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, r.Code, r.Stderr)
		}
	}
	state := func() string {
		var b strings.Builder
		l, err := env.Client.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range l.Items {
			b.WriteString(c.Name + "@" + c.ResourceVersion + " ")
		}
		s, err := env.Client.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range s.Items {
			b.WriteString(x.Name + "@" + string(x.UID) + " ")
		}
		return b.String()
	}
	was := state()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"big", "--storage", "1Gi"}, "volumes only grow"},
		{[]string{"big", "--storage", "600Gi"}, "1Gi to 500Gi"},
		{[]string{"big", "--storage", "lots"}, "not a size"},
		{[]string{"fixed", "--storage", "2Gi"}, "does not allow volume expansion"},
	} {
		r := env.Run(t, ns, append([]string{"db", "resize"}, tc.args...)...)
		if r.Code != 2 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("resize %v: exit %d, want 2 and %q\n%s", tc.args, r.Code, tc.want, r.Stderr)
		}
	}
	if now := state(); now != was {
		t.Errorf("a refused resize changed the namespace:\n%s\n%s", was, now)
	}
}

// A database that fills its 1Gi volume stops taking writes; status says the disk is full and what
// to do; db resize brings it back with every committed row, on a grown filesystem.
func TestE2EResizeFullDisk(t *testing.T) {
	env := testbed.Require(t)
	ns := env.Namespace(t, nil)
	const db = "full"
	if r := env.Run(t, ns, "db", "create", db); r.Code != 0 {
		t.Fatalf("create: exit %d\n%s", r.Code, r.Stderr)
	}
	env.SQL(t, ns, db, "create table big (n int, pad text)")
	const batch = 100000
	committed := 0
	for i := 0; i < 30; i++ {
		r := env.Run(t, ns, "db", "run", db, "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
			"insert into big select g, repeat(md5(random()::text), 30) from generate_series(1, "+strconv.Itoa(batch)+") g")
		if r.Code != 0 {
			break
		}
		committed += batch
	}
	if committed == 0 || committed >= 30*batch {
		t.Fatalf("the volume never filled, or nothing was written: %d rows committed", committed)
	}
	r := env.Run(t, ns, "db", "status", db, "-o", "json")
	var st database.Status
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil || st.State != database.StateDiskFull || st.Disk == nil || !st.Disk.Full {
		t.Fatalf("status of the full database: %v\n%s\n%s", err, r.Stdout, r.Stderr)
	}
	r = env.Run(t, ns, "db", "status", db)
	if !strings.Contains(r.Stdout, "disk full") || !strings.Contains(r.Stdout, "stackblaze db resize full --storage 2Gi") {
		t.Errorf("status does not say the disk is full and what to do:\n%s", r.Stdout)
	}
	if st.Pod != nil && st.Pod.Ready {
		// Still running (refusing writes): list --disk reads it as status does.
		r = env.Run(t, ns, "db", "list", "--disk", "-o", "json")
		var dbs []database.Database
		if err := json.Unmarshal([]byte(r.Stdout), &dbs); err != nil || len(dbs) != 1 || dbs[0].State != database.StateDiskFull || dbs[0].Disk == nil {
			t.Errorf("list --disk of the full database: %v\n%s", err, r.Stdout)
		}
	}
	if r := env.Run(t, ns, "db", "resize", db, "--storage", "2Gi"); r.Code != 0 {
		t.Fatalf("resize of the full database: exit %d\n%s", r.Code, r.Stderr)
	}
	env.SQL(t, ns, db, "insert into big values (-1, 'after the resize')")
	if got := env.SQL(t, ns, db, "select count(*) from big"); got != strconv.Itoa(committed+1) {
		t.Errorf("rows after the resize: %s, want the %d committed and the new one", got, committed)
	}
	df := strings.Fields(mustExec(t, env, ns, database.PodName(db), "df", "-B1", "--output=size", database.DataMountPath))
	if n, _ := strconv.ParseInt(df[len(df)-1], 10, 64); n < 19*(1<<30)/10 {
		t.Errorf("the data filesystem in the container has %d bytes", n)
	}
	r = env.Run(t, ns, "db", "status", db, "-o", "json")
	st = database.Status{}
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil || st.State != database.StateReady || st.Disk == nil || st.Disk.Full {
		t.Errorf("status after the resize: %v\n%s", err, r.Stdout)
	}
}
