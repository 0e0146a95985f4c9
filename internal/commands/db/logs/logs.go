// Package logs is `stackblaze db logs NAME`: the database's PostgreSQL log, parsed into entries
// (database.StreamLogs), or its backup jobs' logs, rendered for people or as one JSON object per
// entry. It only reads, through the Kubernetes API.
package logs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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

// Options are the inputs of logs.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name     string
	Follow   bool
	Previous bool
	Backups  bool
	Since    time.Duration
	Tail     int64
	// Level is the minimum level, a name of database.LogLevels ("" for every entry).
	Level string
}

// NewCmdLogs builds the command.
func NewCmdLogs(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "logs NAME [-f] [--since DURATION] [--tail N] [--previous] [--level LEVEL] [--backups]",
		Short: "Show a database's PostgreSQL log, or follow it",
		Long: strings.TrimSpace(`
Show the log of a database's server: each entry with its time (UTC), level, message, and the
user, database and SQLSTATE of the session, then its detail, hint, context, query and statement.
Lines of the container's entrypoint and of pgBackRest (which archives the WAL) are entries too.

-f follows the log as it is written, across restarts of the database: when the container stops
or the pod is created again, it says so and goes on with the new container's log, from its start.
A stopped database is waited for. --previous shows the container that ran before the last
restart (after a crash, its last lines say why). --level error shows only errors and what is more
severe (levels: debug, info, warning, error, fatal). --backups shows the logs of the daily
backup's jobs instead, oldest first.

-o json prints one JSON object per entry and line (time, pod, pid, level, sqlstate, user,
database, message, detail, hint, context, query, statement, source).

The log is read through the Kubernetes API (pods/log); nothing is changed.`),
		Example: strings.Join([]string{
			"stackblaze db logs mydb --tail 50",
			"stackblaze db logs mydb -f --level warning",
			"stackblaze db logs mydb --since 1h --level error -o json",
			"stackblaze db logs mydb --previous",
			"stackblaze db logs mydb --backups",
		}, "\n"),
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&opts.Follow, "follow", "f", false, "follow the log as it is written, across restarts, until interrupted")
	fl.DurationVar(&opts.Since, "since", 0, "only entries of the last DURATION, like 10m or 2h")
	fl.Int64Var(&opts.Tail, "tail", 0, "only the last N entries (0: all)")
	fl.BoolVarP(&opts.Previous, "previous", "p", false, "the container that ran before the last restart")
	fl.StringVar(&opts.Level, "level", "", "only entries of this level and more severe: "+strings.Join(database.LogLevels, ", "))
	fl.BoolVar(&opts.Backups, "backups", false, "the logs of the backup jobs' pods instead")
	_ = cmd.RegisterFlagCompletionFunc("level", cobra.FixedCompletions(database.LogLevels, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// validate checks the flags together; a bad value is a usage error, and nothing is sent.
func (o *Options) validate() error {
	switch {
	case o.Follow && o.Previous:
		return cmdutil.UsageErrorf("--previous shows a container that has ended: it does not go with -f")
	case o.Backups && (o.Follow || o.Previous):
		return cmdutil.UsageErrorf("--backups shows the logs of the backup jobs: it does not go with -f or --previous")
	case o.Tail < 0:
		return cmdutil.UsageErrorf("--tail %d is negative: use a number of entries, or 0 for all", o.Tail)
	case o.Since < 0:
		return cmdutil.UsageErrorf("--since %s is negative: use a duration such as 10m or 2h", o.Since)
	}
	if o.Level != "" {
		l, err := database.ParseLogLevel(o.Level)
		if err != nil {
			return cmdutil.UsageErrorf("--level: %v", err)
		}
		o.Level = l
	}
	return nil
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	w := bufio.NewWriter(o.IO.Out)
	defer w.Flush()
	r := NewRenderer(w, o.IO.Theme(), o.IO.IsJSON())
	lo := database.LogOptions{Follow: o.Follow, Previous: o.Previous, Since: o.Since, Tail: o.Tail, MinLevel: o.Level}
	if o.Backups {
		logs, err := database.ReadBackupLogs(ctx, c.Clientset, c.Namespace, o.Name, lo)
		if err != nil {
			return cmdutil.KubeError(err, scope)
		}
		return r.Backups(o.Name, logs)
	}
	err = database.StreamLogs(ctx, c.Clientset, c.Namespace, o.Name, lo, func(e database.LogEntry) error {
		if err := r.Entry(e); err != nil {
			return err
		}
		if o.Follow {
			return w.Flush()
		}
		return nil
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return logsError(ctx, o, err, scope)
}

// logsError words what stopped the log.
func logsError(ctx context.Context, o *Options, err error, scope cmdutil.Scope) error {
	if err == nil {
		return nil
	}
	// Following ends with Ctrl-C: nothing went wrong.
	if o.Follow && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return &cmdutil.Error{Code: cmdutil.ExitInterrupted, Err: err, Silent: true}
	}
	var np *database.NoPodError
	if errors.As(err, &np) {
		if np.Replicas == 0 {
			return cmdutil.Errorf(cmdutil.ExitError, "database %s is stopped (scaled to 0): it has no pod, so no log", np.Name).
				WithHint("start it with `stackblaze db scale %s --replicas 1`; `stackblaze db logs %s -f` waits for it and follows its log", np.Name, np.Name)
		}
		return cmdutil.Errorf(cmdutil.ExitError, "database %s has no pod %s yet, so no log yet", np.Name, np.Pod).
			WithHint("`stackblaze db status %s` says why; `stackblaze db logs %s -f` waits for it and follows its log", np.Name, np.Name)
	}
	var ns *database.NotStartedError
	if errors.As(err, &ns) {
		return cmdutil.Errorf(cmdutil.ExitError, "%v, so it has no log yet", ns).
			WithHint("`stackblaze db status %s` says why; `stackblaze db logs %s -f` waits for it and follows its log", ns.Name, ns.Name)
	}
	var npv *database.NoPreviousError
	if errors.As(err, &npv) {
		return cmdutil.Errorf(cmdutil.ExitError, "%v %s ago", npv, output.Age(o.Now().Sub(npv.Created))).
			WithHint("without --previous: the log of the running container; a pod that was deleted (a restart by stackblaze, an update) took its containers' logs with it")
	}
	return cmdutil.KubeError(err, scope)
}

// Renderer writes log entries for people (one line each, then their detail, hint, context,
// query and statement, indented) or as one JSON object per line.
type Renderer struct {
	w    io.Writer
	t    output.Theme
	json *json.Encoder
}

// NewRenderer renders to w with theme t (colour only when t has it), or as JSON lines.
func NewRenderer(w io.Writer, t output.Theme, asJSON bool) *Renderer {
	r := &Renderer{w: w, t: t}
	if asJSON {
		r.json = json.NewEncoder(w)
		r.json.SetEscapeHTML(false)
	}
	return r
}

// timeLayout shows an entry's time, UTC, to the millisecond.
const timeLayout = "2006-01-02 15:04:05.000"

// levelWidth is the width of the level column: WARNING.
const levelWidth = 7

// Entry writes one entry.
func (r *Renderer) Entry(e database.LogEntry) error {
	if r.json != nil {
		return r.json.Encode(e)
	}
	when := strings.Repeat(" ", len(timeLayout))
	if !e.Time.IsZero() {
		when = e.Time.UTC().Format(timeLayout)
	}
	var b strings.Builder
	b.WriteString(r.t.Muted.Render(when))
	b.WriteString("  ")
	b.WriteString(r.level(e.Level))
	b.WriteString(strings.Repeat(" ", max(levelWidth-len(e.Level), 0)+2))
	indent := strings.Repeat(" ", len(timeLayout)+2+levelWidth+2)
	msg := e.Message
	switch e.Source {
	case database.LogSourceStackblaze:
		msg = r.t.Bold.Render("-- " + msg)
	case database.LogSourceEntrypoint, database.LogSourcePgBackRest:
		msg = r.t.Muted.Render(e.Source+":") + " " + msg
	}
	b.WriteString(strings.ReplaceAll(msg, "\n", "\n"+indent))
	if s := session(e); s != "" {
		b.WriteString("  " + r.t.Muted.Render("("+s+")"))
	}
	b.WriteString("\n")
	for _, f := range []struct{ label, value string }{
		{"detail", e.Detail}, {"hint", e.Hint}, {"context", e.Context},
		{"query", e.Query}, {"statement", e.Statement}, {"location", e.Location},
	} {
		if f.value == "" {
			continue
		}
		head := "  " + f.label + ": "
		fmt.Fprintf(&b, "%s%s\n", r.t.Muted.Render(head), strings.ReplaceAll(f.value, "\n", "\n"+strings.Repeat(" ", len(head))))
	}
	_, err := io.WriteString(r.w, b.String())
	return err
}

// level styles a level: errors red, warnings yellow, debug muted.
func (r *Renderer) level(l string) string {
	switch database.LogLevelRank(l) {
	case 3, 4:
		return r.t.Error.Render(l)
	case 2:
		return r.t.Warning.Render(l)
	case 0:
		return r.t.Muted.Render(l)
	}
	return l
}

// session is "user@database, SQLSTATE" of a server entry (no SQLSTATE for 00000, success).
func session(e database.LogEntry) string {
	var parts []string
	if e.User != "" || e.Database != "" {
		parts = append(parts, e.User+"@"+e.Database)
	}
	if e.SQLState != "" && e.SQLState != "00000" {
		parts = append(parts, e.SQLState)
	}
	return strings.Join(parts, ", ")
}

// Backups writes the backup jobs' logs: each pod under a header, or its lines as JSON objects.
func (r *Renderer) Backups(name string, logs []database.BackupLog) error {
	if r.json == nil && len(logs) == 0 {
		_, err := fmt.Fprintf(r.w, "No backup job has left a pod for database %s: the daily backup keeps its last 3 successful and 3 failed jobs, and `stackblaze db backup create` runs where you run it, not in a job.\n", name)
		return err
	}
	for i, l := range logs {
		if r.json == nil {
			if i > 0 {
				fmt.Fprintln(r.w)
			}
			what := []string{}
			if l.Job != "" {
				what = append(what, "job "+l.Job)
			}
			what = append(what, l.Phase, "created "+l.Created.UTC().Format("2006-01-02 15:04:05 UTC"))
			fmt.Fprintln(r.w, r.t.Bold.Render(fmt.Sprintf("==> pod %s (%s) <==", l.Pod, strings.Join(what, ", "))))
			if len(l.Entries) == 0 {
				fmt.Fprintln(r.w, r.t.Muted.Render("(no log lines)"))
			}
		}
		for _, e := range l.Entries {
			if err := r.Entry(e); err != nil {
				return err
			}
		}
	}
	return nil
}
