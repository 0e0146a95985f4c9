// Package list is `stackblaze db list`.
package list

import (
	"context"
	"fmt"
	"io"
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
}

// NewCmdList builds the command.
func NewCmdList(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the databases of the namespace",
		Example: "stackblaze db list\nstackblaze db list -n my-project -o json",
		Args:    cmdutil.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
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
	}
	return output.Table(w, []string{"NAME", "STATE", "VERSION", "PLAN", "STORAGE", "RESTARTS", "AGE"}, rows)
}
