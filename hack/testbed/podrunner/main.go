// Command podrunner is the test bed's stand-in for a container runtime for database pods: see
// package internal/testbed/podrunner.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"syscall"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/stackblaze/stackblaze/internal/testbed/podrunner"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "admin kubeconfig of the test bed")
	stateDir := flag.String("state-dir", "", "directory for per-pod state")
	binDir := flag.String("pg-bin", "", "directory with initdb and postgres")
	runAs := flag.String("user", "postgres", "local user that runs the servers")
	workers := flag.Int("workers", 4, "pods reconciled at once")
	flag.Parse()
	if err := run(*kubeconfig, *stateDir, *binDir, *runAs, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "podrunner:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, stateDir, binDir, runAs string, workers int) error {
	if kubeconfig == "" || stateDir == "" || binDir == "" {
		return fmt.Errorf("--kubeconfig, --state-dir and --pg-bin are required")
	}
	u, err := user.Lookup(runAs)
	if err != nil {
		return fmt.Errorf("look up user %s: %w", runAs, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 100, 200
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r := podrunner.New(podrunner.Config{
		Client: client, Dynamic: dyn, StateDir: stateDir, BinDir: binDir,
		UID: uint32(uid), GID: uint32(gid),
		Log: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	return r.Run(ctx, workers)
}
