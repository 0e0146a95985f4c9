// Package resize is `stackblaze db resize NAME --storage SIZE`: grow a database's volumes online.
// The steps are database.ResizeStorage's; the command validates and renders.
package resize

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of resize.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name    string
	Storage string
	Timeout time.Duration
}

// NewCmdResize builds the command.
func NewCmdResize(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "resize NAME --storage SIZE",
		Short: "Grow a database's volume (and its backup volume) online",
		Long: strings.TrimSpace(`
Grow a database's data volume to SIZE, and its backup volume (when backups stay on a volume) to
twice that, while the database runs. It needs a StorageClass that allows volume expansion. It
waits until the volume claims have the new size and the filesystem in the database's container
has grown, then records the size in the database's StatefulSet (which Kubernetes does not let
change in place: the StatefulSet is replaced, its pod keeps running), so that a pod created later
asks for the new size too. Volumes only grow. If the run is interrupted, run it again.`),
		Example:           "stackblaze db resize mydb --storage 20Gi",
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if opts.Storage == "" {
				return cmdutil.UsageErrorf("--storage is required: the new size, %dGi to %dGi", database.MinStorageGi, database.MaxStorageGi)
			}
			if _, _, err := database.ParseStorage(opts.Storage); err != nil {
				return cmdutil.UsageErrorf("%v", err)
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Storage, "storage", "", "the new size of the data volume, like 20Gi (it only grows)")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 10*time.Minute, "how long to wait for each volume to grow")
	return cmd
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	// The size only grows: ResizeStorage checks it against the database's before any change.
	res, err := database.ResizeStorage(ctx, c, o.Name, o.Storage, database.ResizeOptions{Progress: prog, Timeout: o.Timeout})
	if err != nil {
		prog.Stop()
		return cmdutil.KubeError(err, scope)
	}
	prog.Stop()
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	fmt.Fprintf(o.IO.Out, "Database %s: storage %s → %s", o.Name, res.From, res.To)
	if res.FilesystemBytes > 0 {
		fmt.Fprintf(o.IO.Out, " (the data filesystem has %s)", output.HumanBytes(res.FilesystemBytes))
	}
	fmt.Fprintln(o.IO.Out)
	return nil
}
