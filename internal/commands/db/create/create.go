// Package create is `stackblaze db create`.
package create

import (
	"context"
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
	"github.com/stackblaze/stackblaze/internal/pg"
)

// Options are the inputs of create.
type Options struct {
	IO          *output.IOStreams
	Kube        func() (*kube.Client, error)
	OpenTunnel  cmdutil.TunnelOpener
	CheckLogin  func(context.Context, pg.Login) error
	InitBackups func(ctx context.Context, c *kube.Client, name string) error
	Now         func() time.Time

	Name    string
	Version string
	Storage string
	Plan    string
	NoWait  bool
	Timeout time.Duration

	DNSZone         string
	ImageRepository string
	// S3, when set, keeps the new database's backups in a bucket (the backup_s3_* settings).
	S3 *database.S3Settings

	// BackupAt is the daily backup's time (HH:MM, UTC); BackupAtSet says the flag was given,
	// so that running create again does not move a schedule set with `db backup schedule`.
	BackupAt    string
	BackupAtSet bool
	BackupImage string

	// Filled in by Validate.
	Spec        database.Spec
	StorageNote string
	BackupCron  string
}

// NewCmdCreate builds the command.
func NewCmdCreate(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, OpenTunnel: f.OpenTunnel, CheckLogin: f.CheckLogin, InitBackups: f.InitBackups, Now: f.Now}
	var wait bool
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a PostgreSQL database",
		Long: strings.TrimSpace(fmt.Sprintf(`
Create a PostgreSQL database: a StatefulSet with its data volume and its backup volume, a
ClusterIP Service, the Secret NAME-credentials (username, password, database, host, port,
DATABASE_URL), a NetworkPolicy that admits only pods of the same namespace, and the daily
backup (a CronJob NAME-backup at --backup-at, UTC; change it later with "db backup schedule").

By default create waits until the database pod is Ready and a login with the application's
credentials works through a port-forward, then prints how to connect (never the password).
Running it again with the same spec changes nothing; with another spec it refuses (exit 6).

NAME: lowercase letters, digits and '-', starting with a letter, at most %d characters.
Versions: %s (default %d). Storage: %dGi to %dGi (10G and 10GB are taken as 10Gi).
Plans: %s (see docs/commands.md for their CPU and memory).`,
			database.MaxNameLength, database.VersionList(), database.DefaultVersion, database.MinStorageGi, database.MaxStorageGi, planList())),
		Example: strings.TrimSpace(`
stackblaze db create mydb
stackblaze db create mydb --version 17 --storage 10Gi --plan standard
stackblaze db create mydb --no-wait -o json`),
		Args: cmdutil.OneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if wait && opts.NoWait {
				return cmdutil.UsageErrorf("--wait and --no-wait contradict each other")
			}
			if f.Config != nil {
				opts.DNSZone = f.Config.DNSZone
				opts.ImageRepository = f.Config.ImageRepository
				opts.S3 = f.Config.BackupS3()
			}
			opts.BackupAtSet = cmd.Flags().Changed("backup-at")
			opts.BackupImage = database.BackupImage(f.Version.Version)
			if err := opts.Validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Version, "version", fmt.Sprint(database.DefaultVersion), "PostgreSQL major version: "+database.VersionList())
	fl.StringVar(&opts.Storage, "storage", database.DefaultStorage, fmt.Sprintf("volume size, %dGi to %dGi", database.MinStorageGi, database.MaxStorageGi))
	fl.StringVar(&opts.Plan, "plan", database.DefaultPlan, "plan: "+strings.Join(database.PlanNames(), ", "))
	fl.StringVar(&opts.BackupAt, "backup-at", database.DefaultBackupAt, "time of the daily backup, HH:MM in UTC")
	fl.BoolVar(&wait, "wait", false, "wait until the database accepts a login (the default)")
	fl.BoolVar(&opts.NoWait, "no-wait", false, "return once the objects are written")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 5*time.Minute, "how long to wait for the database")
	_ = cmd.RegisterFlagCompletionFunc("version", cobra.FixedCompletions(versionWords(), cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("plan", cobra.FixedCompletions(database.PlanNames(), cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func planList() string {
	var parts []string
	for _, p := range database.Plans {
		parts = append(parts, p.Name)
	}
	return strings.Join(parts, ", ") + " (default " + database.DefaultPlan + ")"
}

// Validate checks every input without contacting the cluster.
func (o *Options) Validate() error {
	var problems []string
	spec, note, err := database.SpecOf(o.Name, o.Version, o.Storage, o.Plan)
	if err != nil {
		problems = append(problems, err.Error())
	}
	cron, err := database.ParseAt(o.BackupAt)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return &cmdutil.Error{Code: cmdutil.ExitUsage, Err: errors.New(strings.Join(problems, "\n"))}
	}
	o.StorageNote = note
	o.BackupCron = cron
	spec.ImageRepository, spec.DNSZone, spec.S3 = o.ImageRepository, o.DNSZone, o.S3
	o.Spec = spec
	return nil
}

// Result is what create reports, as text or JSON.
type Result struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	Version   int      `json:"version"`
	Plan      string   `json:"plan"`
	Storage   string   `json:"storage"`
	Host      string   `json:"host"`
	Port      int      `json:"port"`
	Database  string   `json:"database"`
	User      string   `json:"user"`
	Secret    string   `json:"secret"`
	Changed   bool     `json:"changed"`
	Changes   []string `json:"changes"`
	// Ready is true when create waited and a login worked; false with --no-wait.
	Ready bool `json:"ready"`
	// Stopped is true when the database exists scaled to 0.
	Stopped bool `json:"stopped,omitempty"`
}

func run(ctx context.Context, o *Options) error {
	res, err := Provision(ctx, o)
	if err != nil {
		return err
	}
	return render(o.IO, res)
}

// Provision does the work of create (database.Provision), with its progress lines, and returns
// the result without printing it.
func Provision(ctx context.Context, o *Options) (*Result, error) {
	c, err := o.Kube()
	if err != nil {
		return nil, err
	}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	if o.StorageNote != "" {
		prog.Info("%s", o.StorageNote)
	}
	p, err := database.Provision(ctx, c, database.ProvisionOptions{
		Spec: o.Spec, BackupCron: o.BackupCron, BackupCronSet: o.BackupAtSet, BackupImage: o.BackupImage,
		NoWait: o.NoWait, Timeout: o.Timeout,
		OpenTunnel: o.OpenTunnel, CheckLogin: o.CheckLogin, InitBackups: o.InitBackups, Now: o.Now, Progress: prog,
	})
	if err != nil {
		prog.Stop()
		return nil, cmdutil.KubeError(err, cmdutil.ScopeOf(c, o.Spec.Name))
	}
	spec := p.Spec
	res := &Result{
		Name: spec.Name, Namespace: spec.Namespace, Version: spec.Version, Plan: spec.Plan.Name,
		Storage: spec.Storage.String(), Host: spec.Host(), Port: database.Port,
		Database: p.Credentials.Database, User: p.Credentials.Username, Secret: database.CredentialsSecretName(spec.Name),
		Changed: len(p.Changes) > 0, Changes: []string{}, Ready: p.Ready, Stopped: p.Stopped,
	}
	for _, ch := range p.Changes {
		res.Changes = append(res.Changes, ch.String())
	}
	if p.Stopped {
		prog.Warn("%s is stopped (scaled to 0); start it with `stackblaze db scale %s --replicas 1`", spec.Name, spec.Name)
	}
	return res, nil
}

func render(ios *output.IOStreams, r *Result) error {
	if ios.IsJSON() {
		return output.JSON(ios.Out, r)
	}
	return RenderText(ios.Out, ios.Theme(), r)
}

// RenderText writes the connection summary.
func RenderText(w io.Writer, t output.Theme, r *Result) error {
	switch {
	case r.Stopped:
		fmt.Fprintf(w, "Database %s exists and is stopped.\n", t.Bold.Render(r.Name))
	case r.Ready && !r.Changed:
		fmt.Fprintf(w, "Database %s is ready (nothing changed).\n", t.Bold.Render(r.Name))
	case r.Ready:
		fmt.Fprintf(w, "Database %s is ready.\n", t.Bold.Render(r.Name))
	default:
		fmt.Fprintf(w, "Database %s is being created (not waiting).\n", t.Bold.Render(r.Name))
	}
	fmt.Fprintln(w)
	rows := [][]string{
		{"  Host", r.Host},
		{"  Port", fmt.Sprint(r.Port)},
		{"  Database", r.Database},
		{"  User", r.User},
		{"  Password", "in Secret " + r.Secret + " (key password; DATABASE_URL has the full URL)"},
		{"  Namespace", r.Namespace},
		{"  Spec", fmt.Sprintf("PostgreSQL %d, %s, plan %s", r.Version, r.Storage, r.Plan)},
	}
	for _, row := range rows {
		fmt.Fprintf(w, "%-14s%s\n", row[0]+":", row[1])
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%s\n", t.Muted.Render(fmt.Sprintf("Attach it to a service: stackblaze db attach %s --to deployment/web", r.Name)))
	return nil
}

func versionWords() []string {
	w := make([]string, len(database.Versions))
	for i, v := range database.Versions {
		w[i] = fmt.Sprint(v)
	}
	return w
}
