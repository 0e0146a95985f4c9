// Package status is `stackblaze db status`.
package status

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of status.
type Options struct {
	IO      *output.IOStreams
	Kube    func() (*kube.Client, error)
	Now     func() time.Time
	Name    string
	DNSZone string
}

// NewCmdStatus builds the command.
func NewCmdStatus(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	return &cobra.Command{
		Use:               "status NAME",
		Short:             "Show the state of a database",
		Example:           "stackblaze db status mydb\nstackblaze db status mydb -o json",
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if f.Config != nil {
				opts.DNSZone = f.Config.DNSZone
			}
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
	st, err := database.GetStatus(ctx, c.Clientset, c.Namespace, o.Name, o.DNSZone)
	if err != nil {
		return cmdutil.KubeError(err, cmdutil.ScopeOf(c, o.Name))
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	database.ReadDisk(dctx, c, st)
	cancel()
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, st)
	}
	return RenderText(o.IO.Out, o.IO.Theme(), st, o.Now())
}

// backupsLine says when the database is backed up, where to, and whether PITR is on.
func backupsLine(b *database.BackupStatus) string {
	when := "no daily backup (set one with `stackblaze db backup schedule`)"
	if b.Schedule != "" {
		tz := b.TimeZone
		if tz == database.BackupTimeZone || tz == "" {
			tz = "UTC"
		}
		when = fmt.Sprintf("daily at %s %s", database.DailyAt(b.Schedule), tz)
	}
	where := "on volume " + b.VolumeClaim
	if b.Repo.Type == "s3" {
		where = fmt.Sprintf("in bucket %s (%s)", b.Repo.Bucket, b.Repo.Path)
	}
	pitr := "no point-in-time recovery"
	if b.PITR {
		pitr = "point-in-time recovery"
	}
	return fmt.Sprintf("%s, %s, %s", when, where, pitr)
}

// RenderText writes the status.
func RenderText(w io.Writer, t output.Theme, st *database.Status, now time.Time) error {
	state := st.State
	if st.State == database.StateReady {
		state = t.Success.Render(state)
	} else {
		state = t.Warning.Render(state)
	}
	pod := "none (stopped)"
	if p := st.Pod; p != nil {
		ready := "not ready"
		if p.Ready {
			ready = "ready"
		}
		pod = fmt.Sprintf("%s, %s, %s, %d restarts", p.Name, p.Phase, ready, p.Restarts)
		if p.Reason != "" {
			pod += ", waiting: " + p.Reason
		}
	} else if st.Replicas > 0 {
		pod = "not created yet"
	}
	bound := st.StorageBound
	if bound == "" {
		bound = "not bound"
	}
	fmt.Fprintf(w, "%s in namespace %s\n\n", t.Bold.Render(st.Name), st.Namespace)
	rows := [][]string{
		{"State", state},
		{"Pod", pod},
		{"Version", fmt.Sprintf("PostgreSQL %s (%s)", st.Version, st.Image)},
		{"Plan", st.Plan},
		{"Storage", fmt.Sprintf("%s requested, %s (%s, %s)", st.Storage, bound, st.VolumeClaim, st.VolumePhase)},
		{"Replicas", fmt.Sprint(st.Replicas)},
		{"Age", output.Age(now.Sub(st.Created))},
		{"Host", fmt.Sprintf("%s:%d", st.Host, st.Port)},
		{"Secret", st.Secret},
	}
	if d := st.Disk; d != nil && len(d.Volumes) > 0 {
		rows = append(rows, []string{"Disk", diskLine(d)})
	}
	if a := st.Autogrow; a != nil {
		rows = append(rows, []string{"Autogrow", autogrowLine(a, now)})
	}
	if u := st.Upgrade; u != nil {
		rows = append(rows, []string{"Upgrade", upgradeLine(st.Name, u)})
	}
	if b := st.Backups; b != nil {
		rows = append(rows, []string{"Backups", backupsLine(b)})
	}
	// Only when there are some, so that the view of an unattached database stays as it was.
	for i, a := range st.Attachments {
		label := ""
		if i == 0 {
			label = "Attached:"
		}
		rows = append(rows, []string{label, fmt.Sprintf("%s (%s)", a.Workload, a.Env)})
	}
	for _, r := range rows {
		if r[0] == "" {
			fmt.Fprintf(w, "  %-10s%s\n", "", r[1])
			continue
		}
		if r[0] == "Attached:" {
			fmt.Fprintf(w, "  %-10s%s\n", r[0], r[1])
			continue
		}
		fmt.Fprintf(w, "  %-10s%s\n", r[0]+":", r[1])
	}
	if d := st.Disk; d != nil {
		for _, v := range d.Volumes {
			if v.Volume == "data" && !d.Full && v.UsedPercent >= database.WarnPercent && st.Autogrow != nil && !sameSize(st.Storage, st.Autogrow.Max) {
				fmt.Fprintf(w, "\n%s the data volume is %.0f%% full: autogrow grows it at its next check (up to %s)\n",
					t.Warning.Render("!"), v.UsedPercent, st.Autogrow.Max)
				continue
			}
			if v.Volume == "data" && !d.Full && v.UsedPercent >= database.WarnPercent {
				fmt.Fprintf(w, "\n%s the data volume is %.0f%% full: grow it before PostgreSQL stops, with `stackblaze db resize %s --storage %s`\n",
					t.Warning.Render("!"), v.UsedPercent, st.Name, doubled(st.Storage))
			}
		}
		if d.Full {
			fmt.Fprintf(w, "\n%s the data volume is full: PostgreSQL refuses writes, or stopped and cannot start. Grow it (nothing is lost): `stackblaze db resize %s --storage %s`\n",
				t.Error.Render("✖"), st.Name, doubled(st.Storage))
		}
	}
	return nil
}

// autogrowLine says when autogrow grows the database, and what it did last.
func autogrowLine(a *database.AutogrowStatus, now time.Time) string {
	s := fmt.Sprintf("on: every %s, grows the volumes by half when the data volume is %d%% used, up to %s", a.Every, a.At, a.Max)
	if g := a.Last; g != nil {
		s += fmt.Sprintf("; last grew %s → %s at %.0f%% used, %s ago", g.From, g.To, g.UsedPercent, output.Age(now.Sub(g.Time)))
		if g.To == a.Max {
			s += " (its maximum)"
		}
	}
	if a.Failing {
		s += "; its last check failed: `kubectl get jobs -l app.kubernetes.io/name=stackblaze-autogrow` and their logs say why"
	}
	return s
}

func sameSize(a, b string) bool {
	x, err1 := resource.ParseQuantity(a)
	y, err2 := resource.ParseQuantity(b)
	return err1 == nil && err2 == nil && x.Cmp(y) == 0
}

// diskLine says how full each volume is, and the WAL's share of the data volume.
func diskLine(d *database.DiskUsage) string {
	var parts []string
	for _, v := range d.Volumes {
		p := fmt.Sprintf("%s %s of %s used (%.0f%%), %s free", v.Volume, output.HumanBytes(v.UsedBytes), output.HumanBytes(v.SizeBytes), v.UsedPercent, output.HumanBytes(v.FreeBytes))
		if v.Volume == "data" && d.WALBytes > 0 {
			p += ", WAL " + output.HumanBytes(d.WALBytes)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// doubled is twice a size such as 1Gi (the resize a full volume's hint suggests), within the
// largest allowed.
func doubled(storage string) string {
	q, err := resource.ParseQuantity(storage)
	if err != nil {
		return "SIZE"
	}
	gi := q.Value() >> 30 * 2
	if gi > database.MaxStorageGi {
		gi = database.MaxStorageGi
	}
	if gi < 2 {
		gi = 2
	}
	return fmt.Sprintf("%dGi", gi)
}

// upgradeLine says where the database's last major version upgrade is.
func upgradeLine(name string, u *database.UpgradeRecord) string {
	at := u.Started.UTC().Format(time.RFC3339)
	if !u.Stopped.IsZero() {
		at = u.Stopped.UTC().Format(time.RFC3339)
	}
	s := fmt.Sprintf("from PostgreSQL %d to %d at %s", u.From, u.To, at)
	if d := u.Outage(); d > 0 {
		s += fmt.Sprintf(" (writes refused for %s)", d.Round(100*time.Millisecond))
	}
	switch u.Phase {
	case database.UpgradeDone:
		return s + fmt.Sprintf("; not finished: `stackblaze db upgrade %s --finish` confirms it, --revert goes back to %d", name, u.From)
	case database.UpgradeFinished:
		return s + "; finished " + u.Finished.UTC().Format(time.RFC3339)
	case database.UpgradeReverted:
		return s + fmt.Sprintf("; reverted %s: runs %d again", u.Reverted.UTC().Format(time.RFC3339), u.From)
	case database.UpgradeReverting:
		return s + fmt.Sprintf("; going back to %d did not finish: run `stackblaze db upgrade %s --revert` again", u.From, name)
	}
	return s + fmt.Sprintf("; in progress (last step: %s): run `stackblaze db upgrade %s --version %d` again to finish it", u.Phase, name, u.To)
}
