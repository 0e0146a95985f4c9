package database_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/testbed"
)

// countingClient is a clientset whose requests are counted.
func countingClient(t testing.TB, cfg *rest.Config) (kubernetes.Interface, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	c := rest.CopyConfig(cfg)
	c.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			n.Add(1)
			return rt.RoundTrip(r)
		})
	}
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	return cs, &n
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// stoppedDatabases creates n databases' StatefulSets, stopped (0 replicas), the cheapest way to
// have many databases in one namespace: list reads StatefulSets and pods only.
func stoppedDatabases(t testing.TB, env *testbed.Env, ns string, from, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i := from; i < from+n; i++ {
		name := fmt.Sprintf("db%04d", i)
		labels := database.Labels(name)
		sts := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: map[string]string{
				database.AnnotationVersion: "16", database.AnnotationPlan: "hobby", database.AnnotationStorage: "1Gi"}},
			Spec: appsv1.StatefulSetSpec{
				Replicas:    ptr.To[int32](0),
				ServiceName: name + "-headless",
				Selector:    &metav1.LabelSelector{MatchLabels: database.SelectorLabels(name)},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres", Image: "postgres:16"}}},
				},
			},
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := env.Client.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// BenchmarkE2EList500 lists a namespace of 500 databases; see docs/benchmarks.md. The fixed
// number of API calls is asserted by TestE2EList500 in internal/commands.
func BenchmarkE2EList500(b *testing.B) {
	env := testbed.Require(b)
	ns := env.Namespace(b, nil)
	stoppedDatabases(b, env, ns, 0, 500)
	cs, calls := countingClient(b, env.REST)
	ctx := context.Background()
	calls.Store(0)
	b.ResetTimer()
	for b.Loop() {
		dbs, err := database.List(ctx, cs, ns)
		if err != nil {
			b.Fatal(err)
		}
		if len(dbs) != 500 {
			b.Fatalf("listed %d", len(dbs))
		}
	}
	b.ReportMetric(float64(calls.Load())/float64(b.N), "api-calls/op")
}
