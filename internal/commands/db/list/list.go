// Package list is `stackblaze db list`.
package list

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of list.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time
	// Disk reads each running database's disk use in its container (one exec each).
	Disk bool
}

// NewCmdList builds the command.
func NewCmdList(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the databases of the namespace",
		Example: "stackblaze db list\nstackblaze db list --disk\nstackblaze db list -n my-project -o json",
		Args:    cmdutil.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Disk, "disk", false, "also read each running database's disk use (an exec into each pod)")
	return cmd
}

// readDisks reads the disk use of the running databases, a few at a time, each within 10s; a
// database whose disk is full gets that state.
func readDisks(ctx context.Context, c *kube.Client, dbs []database.Database) {
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range dbs {
		if !dbs[i].Ready {
			continue
		}
		wg.Add(1)
		go func(d *database.Database) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if u, err := database.ReadDiskUsage(dctx, c, d.Name); err == nil {
				d.Disk = u
				if u.Full {
					d.State = database.StateDiskFull
				}
			}
		}(&dbs[i])
	}
	wg.Wait()
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	dbs, err := database.List(ctx, c.Clientset, c.Namespace)
	if err != nil {
		return cmdutil.KubeError(err, cmdutil.ScopeOf(c, ""))
	}
	if o.Disk {
		readDisks(ctx, c, dbs)
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, dbs)
	}
	if len(dbs) == 0 {
		fmt.Fprintf(o.IO.ErrOut, "No databases in namespace %s. Create one with `stackblaze db create NAME`.\n", c.Namespace)
		return nil
	}
	return RenderText(o.IO.Out, o.IO.Theme(), dbs, o.Now())
}

// RenderText writes the table.
func RenderText(w io.Writer, t output.Theme, dbs []database.Database, now time.Time) error {
	disk := false
	for _, d := range dbs {
		disk = disk || d.Disk != nil
	}
	rows := make([][]string, 0, len(dbs))
	for _, d := range dbs {
		state := d.State
		switch state {
		case database.StateReady:
			state = t.Success.Render(state)
		case database.StateStopped:
			state = t.Muted.Render(state)
		default:
			state = t.Warning.Render(state)
		}
		rows = append(rows, []string{d.Name, state, d.Version, d.Plan, d.Storage, fmt.Sprint(d.Restarts), output.Age(now.Sub(d.Created))})
		if disk {
			rows[len(rows)-1] = append(rows[len(rows)-1], diskCell(d.Disk))
		}
	}
	head := []string{"NAME", "STATE", "VERSION", "PLAN", "STORAGE", "RESTARTS", "AGE"}
	if disk {
		head = append(head, "DISK")
	}
	return output.Table(w, head, rows)
}

// diskCell is the data volume's use ("81% of 1.0 GiB"), "-" when it was not read.
func diskCell(d *database.DiskUsage) string {
	if d != nil {
		for _, v := range d.Volumes {
			if v.Volume == "data" {
				return fmt.Sprintf("%.0f%% of %s", v.UsedPercent, output.HumanBytes(v.SizeBytes))
			}
		}
	}
	return "-"
}
