// Command stackblaze manages StackBlaze PostgreSQL databases on Kubernetes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/stackblaze/stackblaze/internal/commands"
	"github.com/stackblaze/stackblaze/internal/output"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := commands.Main(ctx, output.System(), os.Args[1:])
	stop()
	os.Exit(code)
}
