// Temporary: measuring the tunnel against kubectl port-forward. Deleted before handing back.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stackblaze/stackblaze/internal/tunnel"
)

func main() {
	kc := flag.String("kubeconfig", "", "")
	ns := flag.String("n", "", "")
	sel := flag.String("l", "", "")
	port := flag.Int("port", 0, "")
	flag.Parse()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kc)
	if err != nil {
		panic(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	t, err := tunnel.Open(ctx, tunnel.Config{REST: cfg, Client: cs, LocalPort: *port, Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}, tunnel.Target{Namespace: *ns, Selector: *sel, Port: 5432})
	if err != nil {
		panic(err)
	}
	fmt.Println(t.Addr())
	<-ctx.Done()
	t.Close()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Fprintf(os.Stderr, "cpu user=%v sys=%v\n", ru.Utime, ru.Stime)
}
