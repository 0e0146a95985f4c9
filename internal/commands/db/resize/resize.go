// Package resize is `stackblaze db resize NAME --storage SIZE [--auto --max SIZE]`: grow a
// database's volumes online, and let the cluster grow them before they fill. The steps are
// database.ResizeStorage's, SetAutogrow's and GrowIfUsed's; the command validates and renders.
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

	// Auto turns autogrow on (AutoSet and true) or off (AutoSet and false), with Max, At, Every.
	Auto, AutoSet bool
	Max           string
	At            int
	Every         time.Duration
	// IfUsed, when set, is one autogrow check: grow only when the volume is that full.
	IfUsed int
	// Image is the stackblaze image the autogrow job runs.
	Image string
}

// NewCmdResize builds the command.
func NewCmdResize(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "resize NAME [--storage SIZE] [--auto --max SIZE]",
		Short: "Grow a database's volumes online, now or automatically before they fill",
		Long: strings.TrimSpace(`
Grow a database's data volume to SIZE, and its backup volume (when backups stay on a volume) to
twice that, while the database runs. It needs a StorageClass that allows volume expansion. It
waits until the volume claims have the new size and the filesystem in the database's container
has grown, then records the size in the database's StatefulSet (which Kubernetes does not let
change in place: the StatefulSet is replaced, its pod keeps running), so that a pod created later
asks for the new size too. Volumes only grow. A database that stopped because its disk is full
runs again after the resize. If the run is interrupted, run it again.

Autogrow (off by default): --auto --max SIZE makes the cluster itself grow the volumes before
they fill. A CronJob in the database's namespace looks at the data volume every --every (5m)
and, when it is --at (80) percent used or more, grows it by half (at least 1Gi), never past
--max. It runs as a ServiceAccount that may only read the database's StatefulSet, read its
disk use in its pod, and grow its two volume claims. db status shows autogrow and the last
growth it made. --auto=false turns it off.

--if-used PERCENT --max SIZE is one such check, run now: what the CronJob runs.`),
		Example: strings.Join([]string{
			"stackblaze db resize mydb --storage 20Gi",
			"stackblaze db resize mydb --auto --max 100Gi",
			"stackblaze db resize mydb --auto=false",
		}, "\n"),
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			opts.AutoSet = cmd.Flags().Changed("auto")
			if err := opts.validate(cmd); err != nil {
				return err
			}
			opts.Image = database.BackupImage(f.Version.Version)
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Storage, "storage", "", "the new size of the data volume, like 20Gi (it only grows)")
	fl.BoolVar(&opts.Auto, "auto", false, "let the cluster grow the volumes before they fill (--auto=false: stop)")
	fl.StringVar(&opts.Max, "max", "", "with --auto or --if-used: the largest size the volume may grow to, like 100Gi")
	fl.IntVar(&opts.At, "at", database.AutogrowAt, fmt.Sprintf("with --auto: grow when the data volume is this many percent used (%d to %d)", database.MinAutogrowAt, database.MaxAutogrowAt))
	fl.DurationVar(&opts.Every, "every", database.AutogrowEvery, "with --auto: how often the cluster looks at the volume's use (1m to 60m)")
	fl.IntVar(&opts.IfUsed, "if-used", 0, "grow now, by half, only if the data volume is this many percent used (what autogrow runs)")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 10*time.Minute, "how long to wait for each volume to grow")
	return cmd
}

// validate checks the flags together; a bad value is a usage error, and nothing is sent.
func (o *Options) validate(cmd *cobra.Command) error {
	fl := cmd.Flags()
	on := o.AutoSet && o.Auto
	switch {
	case o.IfUsed != 0 && (o.Storage != "" || o.AutoSet):
		return cmdutil.UsageErrorf("--if-used is one autogrow check on its own: it does not go with --storage or --auto")
	case o.IfUsed != 0 && (o.IfUsed < 1 || o.IfUsed > 100):
		return cmdutil.UsageErrorf("--if-used %d is not a percentage: use 1 to 100", o.IfUsed)
	case o.IfUsed != 0 && o.Max == "":
		return cmdutil.UsageErrorf("--if-used needs --max: the largest size the volume may grow to")
	case !on && o.IfUsed == 0 && (fl.Changed("max") || fl.Changed("at") || fl.Changed("every")):
		return cmdutil.UsageErrorf("--max, --at and --every are autogrow's: use them with --auto")
	case o.IfUsed == 0 && o.Storage == "" && !o.AutoSet:
		return cmdutil.UsageErrorf("give --storage SIZE (the new size, %dGi to %dGi), --auto --max SIZE (autogrow) or --auto=false", database.MinStorageGi, database.MaxStorageGi)
	case on && o.Max == "":
		return cmdutil.UsageErrorf("--auto needs --max: the largest size the cluster may grow the volume to, up to %dGi", database.MaxStorageGi)
	}
	for _, s := range []string{o.Storage, o.Max} {
		if s == "" {
			continue
		}
		if _, _, err := database.ParseStorage(s); err != nil {
			return cmdutil.UsageErrorf("%v", err)
		}
	}
	if on {
		// --max is checked against the database's size in the cluster (and the new size here).
		if err := database.ValidateAutogrowCheck(o.At, o.Every); err != nil {
			return cmdutil.UsageErrorf("%v", err)
		}
		if o.Storage != "" {
			size, _, _ := database.ParseStorage(o.Storage)
			if max, _, _ := database.ParseStorage(o.Max); max.Cmp(size) <= 0 {
				return cmdutil.UsageErrorf("--max %s is not more than --storage %s: autogrow needs room to grow", max.String(), size.String())
			}
		}
	}
	return nil
}

// Result is what resize reports: the resize, autogrow, or one check.
type Result struct {
	*database.Resized
	Autogrow *database.AutogrowStatus `json:"autogrow,omitempty"`
	// AutogrowRemoved lists the objects --auto=false deleted.
	AutogrowRemoved []string        `json:"autogrowRemoved,omitempty"`
	Check           *database.Grown `json:"check,omitempty"`
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	ropts := database.ResizeOptions{Progress: prog, Timeout: o.Timeout}
	res := &Result{}
	if o.IfUsed != 0 {
		g, err := database.GrowIfUsed(ctx, c, o.Name, o.IfUsed, o.Max, ropts)
		prog.Stop()
		if err != nil {
			return cmdutil.KubeError(err, scope)
		}
		res.Check = g
		return render(o, res)
	}
	if o.Storage != "" {
		// The size only grows: ResizeStorage checks it against the database's before any change.
		r, err := database.ResizeStorage(ctx, c, o.Name, o.Storage, ropts)
		if err != nil {
			prog.Stop()
			return cmdutil.KubeError(err, scope)
		}
		res.Resized = r
	}
	if o.AutoSet && o.Auto {
		a, err := database.SetAutogrow(ctx, c, o.Name, database.AutogrowOptions{Max: o.Max, At: o.At, Every: o.Every, Image: o.Image})
		if err != nil {
			prog.Stop()
			return cmdutil.KubeError(err, scope)
		}
		res.Autogrow = a
		prog.Done("Autogrow on: the cluster grows %s when its data volume is %d%% used, up to %s", o.Name, a.At, a.Max)
	}
	if o.AutoSet && !o.Auto {
		gone, err := database.UnsetAutogrow(ctx, c, o.Name)
		if err != nil {
			prog.Stop()
			return cmdutil.KubeError(err, scope)
		}
		for _, g := range gone {
			res.AutogrowRemoved = append(res.AutogrowRemoved, g.String())
		}
	}
	prog.Stop()
	return render(o, res)
}

func render(o *Options, res *Result) error {
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	w := o.IO.Out
	if r := res.Resized; r != nil {
		fmt.Fprintf(w, "Database %s: storage %s → %s", o.Name, r.From, r.To)
		if r.FilesystemBytes > 0 {
			fmt.Fprintf(w, " (the data filesystem has %s)", output.HumanBytes(r.FilesystemBytes))
		}
		fmt.Fprintln(w)
	}
	if a := res.Autogrow; a != nil {
		fmt.Fprintf(w, "Database %s: autogrow on, every %s: when the data volume is %d%% used, it grows by half, up to %s\n", o.Name, a.Every, a.At, a.Max)
	}
	if o.AutoSet && !o.Auto {
		if len(res.AutogrowRemoved) == 0 {
			fmt.Fprintf(w, "Database %s: autogrow was off already\n", o.Name)
		} else {
			fmt.Fprintf(w, "Database %s: autogrow off (removed %s)\n", o.Name, strings.Join(res.AutogrowRemoved, ", "))
		}
	}
	if g := res.Check; g != nil {
		switch {
		case g.Grew:
			fmt.Fprintf(w, "Database %s: data volume %.0f%% used: grown %s → %s (at most %s)\n", o.Name, g.UsedPercent, g.Size, g.To, g.Max)
		case g.AtMax:
			fmt.Fprintf(w, "Database %s: data volume %.0f%% used, and at its maximum %s already: not grown\n", o.Name, g.UsedPercent, g.Max)
		default:
			fmt.Fprintf(w, "Database %s: data volume %.0f%% used of %s: no growth needed\n", o.Name, g.UsedPercent, g.Size)
		}
	}
	return nil
}
