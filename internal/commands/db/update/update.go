// Package update is `stackblaze db update NAME --plan PLAN`: move a database to another plan.
// The steps are database.UpdatePlan's; the command validates and renders.
package update

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

// Options are the inputs of update.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name    string
	Plan    string
	Timeout time.Duration
}

// elsewhere are what create sets that update does not change, and the command that does.
var elsewhere = map[string]string{
	"storage": "volumes grow with `stackblaze db resize %s --storage SIZE`",
	"version": "the major version changes with `stackblaze db upgrade %s --version N`",
}

// NewCmdUpdate builds the command.
func NewCmdUpdate(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "update NAME --plan PLAN",
		Short: "Move a database to another plan: CPU, memory, settings and point-in-time recovery",
		Long: strings.TrimSpace(`
Move a database to another plan: its container's CPU and memory, /dev/shm, the server settings
sized for the plan's memory (shared_buffers, effective_cache_size, maintenance_work_mem,
work_mem), and point-in-time recovery (on the standard and pro plans, WAL is archived at least
every 5 minutes; on hobby, restores are by backup only).

Memory and these settings take effect when the server starts: a running database is restarted
once, after a checkpoint so that its shutdown is short (usually a few seconds without
connections; applications reconnect). A stopped database takes the plan when it starts. A plan
that the namespace's ResourceQuota or LimitRange would not admit is refused before anything
changes; if the new pod cannot be scheduled, the old plan is put back.

Plans: ` + planList() + `.
The size of the volume changes with db resize, the major version with db upgrade.`),
		Example:           "stackblaze db update mydb --plan standard",
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			for flag, what := range elsewhere {
				if cmd.Flags().Changed(flag) {
					return cmdutil.UsageErrorf("db update does not change --%s: %s", flag, fmt.Sprintf(what, opts.Name))
				}
			}
			if opts.Plan == "" {
				return cmdutil.UsageErrorf("--plan is required: one of %s", strings.Join(database.PlanNames(), ", "))
			}
			if _, err := database.ValidatePlan(opts.Plan); err != nil {
				return cmdutil.UsageErrorf("%v", err)
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Plan, "plan", "", "the new plan: "+strings.Join(database.PlanNames(), ", "))
	_ = cmd.RegisterFlagCompletionFunc("plan", cobra.FixedCompletions(database.PlanNames(), cobra.ShellCompDirectiveNoFileComp))
	// Accepted only to say which command changes them.
	cmd.Flags().String("storage", "", "")
	cmd.Flags().String("version", "", "")
	_ = cmd.Flags().MarkHidden("storage")
	_ = cmd.Flags().MarkHidden("version")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 10*time.Minute, "how long to wait for the database on its new plan")
	return cmd
}

func planList() string {
	var s []string
	for _, p := range database.Plans {
		pitr := "no point-in-time recovery"
		if p.PITR {
			pitr = "point-in-time recovery"
		}
		s = append(s, fmt.Sprintf("%s (%s CPU, %s memory, %s)", p.Name, p.CPULimit, p.MemoryLimit, pitr))
	}
	return strings.Join(s, ", ")
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	res, err := database.UpdatePlan(ctx, c, o.Name, o.Plan, database.UpdateOptions{Progress: prog, Timeout: o.Timeout, Now: o.Now})
	prog.Stop()
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	if len(res.Changes) == 0 {
		fmt.Fprintf(o.IO.Out, "Database %s is already on plan %s: nothing to change\n", o.Name, res.To)
		return nil
	}
	fmt.Fprintf(o.IO.Out, "Database %s: plan %s → %s\n", o.Name, res.From, res.To)
	for _, ch := range res.Changes {
		fmt.Fprintf(o.IO.Out, "  %s\n", ch)
	}
	if res.Restarted {
		fmt.Fprintf(o.IO.Out, "Restarted once: %.1f s without connections\n", res.OutageSeconds)
	}
	return nil
}
