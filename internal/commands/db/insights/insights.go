// Package insights is `stackblaze db insights NAME`: a health report with a status per check.
// The checks are database.ReadInsights'; the command renders them and sets the exit code.
package insights

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of insights.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name string
	// FailOn is "", "warn" or "bad": the exit code is ExitUnhealthy when a check is that bad.
	FailOn string
	Long   time.Duration
}

// NewCmdInsights builds the command.
func NewCmdInsights(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "insights NAME",
		Short: "A health report: a status per check, the value, and what to do",
		Long: strings.TrimSpace(`
A health report of a database, one line per check with its status (✔ ok, ⚠ warn, ✖ bad), the
value it looked at and, when it is not ok, what to do: connections against the limit,
long-running queries and transactions, sessions idle in a transaction, who blocks whom (with
the queries), cache and index hit ratios, unused and duplicate indexes, dead rows, the queries
that take the most time (pg_stat_statements), disk use, WAL archiving, transaction ID age,
vacuum and analyze of the biggest tables, and the age of the last backup. The thresholds are in
docs/commands.md.

It reads PostgreSQL's statistics in the database's pod (one psql run, as the superuser), its
disk use, its log and its backup repository; it changes nothing.

--fail-on warn|bad exits with code 10 when a check is at that status or worse: for CI and
monitoring. -o json prints the same checks as one document.`),
		Example: strings.Join([]string{
			"stackblaze db insights mydb",
			"stackblaze db insights mydb --fail-on bad -o json",
		}, "\n"),
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			switch opts.FailOn {
			case "", database.CheckWarn, database.CheckBad:
			default:
				return cmdutil.UsageErrorf("--fail-on %q is not a status: use warn or bad", opts.FailOn)
			}
			if opts.Long < time.Second {
				return cmdutil.UsageErrorf("--long %s is too short: use 1s or more, like 5m", opts.Long)
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.FailOn, "fail-on", "", "exit with code 10 when a check is warn (or bad) or worse: warn, bad")
	cmd.Flags().DurationVar(&opts.Long, "long", database.DefaultLong, "how long a query, a transaction or an idle transaction may last before it is reported")
	_ = cmd.RegisterFlagCompletionFunc("fail-on", cobra.FixedCompletions([]string{database.CheckWarn, database.CheckBad}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	prog := o.IO.NewProgress(o.Now)
	prog.Start("Reading the statistics of %s", o.Name)
	r, err := database.ReadInsights(ctx, c, o.Name, database.InsightsOptions{Long: o.Long, Now: o.Now})
	prog.Stop()
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	if o.IO.IsJSON() {
		if err := output.JSON(o.IO.Out, r); err != nil {
			return err
		}
	} else {
		Render(o.IO, r)
	}
	if o.FailOn != "" && database.StatusRank(r.Status) >= database.StatusRank(o.FailOn) {
		return cmdutil.Errorf(cmdutil.ExitUnhealthy, "database %s: %s", o.Name, failing(r, o.FailOn))
	}
	return nil
}

// failing names the checks at or past status.
func failing(r *database.Insights, status string) string {
	var n []string
	for _, c := range r.Checks {
		if database.StatusRank(c.Status) >= database.StatusRank(status) {
			n = append(n, c.Name+" is "+c.Status)
		}
	}
	return strings.Join(n, ", ")
}

// Render writes the report for people: a header, then per check its symbol, title and value,
// and, when it is not ok, its details and what to do.
func Render(s *output.IOStreams, r *database.Insights) {
	t := s.Theme()
	w := s.Out
	fmt.Fprintf(w, "%s insights at %s\n\n", t.Bold.Render(r.Database), r.Time.UTC().Format("2006-01-02 15:04:05 UTC"))
	width := 0
	for _, c := range r.Checks {
		width = max(width, len(c.Title))
	}
	for _, c := range r.Checks {
		fmt.Fprintf(w, "%s %-*s  %s\n", symbol(t, c.Status), width, c.Title, c.Value)
		if c.Status == database.CheckOK {
			continue
		}
		for _, d := range c.Details {
			line(w, width, t.Muted.Render("· "+d))
		}
		if c.Advice != "" {
			line(w, width, "→ "+c.Advice)
		}
	}
	counts := map[string]int{}
	for _, c := range r.Checks {
		counts[c.Status]++
	}
	fmt.Fprintf(w, "\n%d ok, %d warn, %d bad\n", counts[database.CheckOK], counts[database.CheckWarn], counts[database.CheckBad])
}

func line(w io.Writer, width int, s string) {
	fmt.Fprintf(w, "  %*s  %s\n", width, "", s)
}

func symbol(t output.Theme, status string) string {
	switch status {
	case database.CheckOK:
		return t.Success.Render("✔")
	case database.CheckWarn:
		return t.Warning.Render("⚠")
	}
	return t.Error.Render("✖")
}
