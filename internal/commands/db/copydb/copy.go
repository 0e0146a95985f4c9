// Package copydb is `stackblaze db copy SOURCE TARGET`: one database's data into another's,
// inside the cluster. The steps are database.Copy's; the command validates, asks and renders.
package copydb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/pg"
)

// Options are the inputs of copy.
type Options struct {
	IO         *output.IOStreams
	Kube       func() (*kube.Client, error)
	OpenTunnel cmdutil.TunnelOpener
	CheckLogin func(context.Context, pg.Login) error
	Now        func() time.Time

	Source, Target string
	Clean, Yes     bool
	// Create makes TARGET first, like SOURCE (its version, storage and plan), as create would
	// with these settings.
	Create                                bool
	DNSZone, ImageRepository, BackupImage string
	S3                                    *database.S3Settings
	Timeout                               time.Duration
}

// NewCmdCopy builds the command.
func NewCmdCopy(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, OpenTunnel: f.OpenTunnel, CheckLogin: f.CheckLogin, Now: f.Now,
		BackupImage: database.BackupImage(f.Version.Version)}
	cmd := &cobra.Command{
		Use:   "copy SOURCE TARGET",
		Short: "Copy one database's data into another, inside the cluster",
		Long: strings.TrimSpace(`
Copy the application database of SOURCE into TARGET's, both databases of this namespace: TARGET's
pod dumps SOURCE through its Service with its own pg_dump and restores it with pg_restore in one
transaction, every object owned by TARGET's application role. The data never leaves the cluster.
TARGET runs the same PostgreSQL major as SOURCE or a newer one (a copy is also a way to a newer
major). TARGET must be empty, unless --clean, which replaces the objects of the same names (it
asks; --yes in CI). --create makes TARGET first, a new database like SOURCE (its version,
storage and plan; credentials and backups of its own); if the copy then fails, TARGET is deleted
again, so that the same command can be run again.`),
		Example:           "stackblaze db copy shop shop-staging --create\nstackblaze db copy shop shop-staging --clean --yes",
		Args:              cmdutil.TwoArgs("SOURCE and TARGET"),
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Source, opts.Target = args[0], args[1]
			for _, n := range args {
				if err := database.ValidateName(n); err != nil {
					return cmdutil.UsageErrorf("%v", err)
				}
			}
			opts.Yes = cmdutil.AssumeYes(f, opts.Yes)
			if f.Config != nil {
				opts.DNSZone, opts.ImageRepository, opts.S3 = f.Config.DNSZone, f.Config.ImageRepository, f.Config.BackupS3()
			}
			if opts.Clean && opts.Create {
				return cmdutil.UsageErrorf("--clean and --create contradict each other: a new database has nothing to replace")
			}
			if opts.Clean {
				if err := confirmation(opts.Target).Refuse(opts.IO, opts.Yes); err != nil {
					return err
				}
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Clean, "clean", false, "replace TARGET's objects of the same names (asks first)")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask before --clean")
	cmd.Flags().BoolVar(&opts.Create, "create", false, "create TARGET first, like SOURCE (version, storage, plan)")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 5*time.Minute, "with --create: how long to wait for the new database")
	return cmd
}

func confirmation(target string) cmdutil.Confirmation {
	return cmdutil.Confirmation{Action: "replace the objects of database " + target, Effect: "--clean",
		Hint: "add --yes to replace them", Declined: "nothing copied: no confirmation"}
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Target)
	if o.Clean {
		if err := confirmation(o.Target).Ask(o.IO, o.Yes, fmt.Sprintf("Replace the objects of %s that %s also has?", o.Target, o.Source)); err != nil {
			return err
		}
	}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	if o.Create {
		if err := create(ctx, c, o, prog); err != nil {
			return err
		}
	}
	res, err := database.Copy(ctx, c, o.Source, o.Target, database.MoveOptions{Clean: o.Clean, Progress: prog, Now: o.Now})
	prog.Stop()
	if err != nil && o.Create {
		return deleteAgain(ctx, c, o, cmdutil.KubeError(err, scope))
	}
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	fmt.Fprintf(o.IO.Out, "Copied %s into %s: %d objects in %.1f s\n", res.From, res.To, res.Objects, res.Seconds)
	return nil
}

// create makes the new database TARGET like SOURCE: its version, storage and plan.
func create(ctx context.Context, c *kube.Client, o *Options, prog database.Progress) error {
	scope := cmdutil.ScopeOf(c, o.Target)
	switch err := database.Exists(ctx, c.Clientset, c.Namespace, o.Target); {
	case err == nil:
		return (&cmdutil.Error{Code: cmdutil.ExitConflict, Err: fmt.Errorf("database %s already exists in namespace %s", o.Target, c.Namespace)}).
			WithHint("copy into it without --create (with --clean to replace its objects), or choose a new name")
	case !errors.As(err, new(*database.NotFoundError)):
		return cmdutil.KubeError(err, scope)
	}
	src, err := database.GetDatabase(ctx, c.Clientset, c.Namespace, o.Source)
	if err != nil {
		return cmdutil.KubeError(err, cmdutil.ScopeOf(c, o.Source))
	}
	spec, _, err := database.SpecOf(o.Target, src.Annotations[database.AnnotationVersion], src.Annotations[database.AnnotationStorage], src.Annotations[database.AnnotationPlan])
	if err != nil {
		return fmt.Errorf("the spec of %s: %w", o.Source, err)
	}
	spec.ImageRepository, spec.DNSZone, spec.S3 = o.ImageRepository, o.DNSZone, o.S3
	cron, _ := database.ParseAt(database.DefaultBackupAt)
	if _, err := database.Provision(ctx, c, database.ProvisionOptions{
		Spec: spec, BackupCron: cron, BackupImage: o.BackupImage, Timeout: o.Timeout,
		OpenTunnel: o.OpenTunnel, CheckLogin: o.CheckLogin, Now: o.Now, Progress: prog,
	}); err != nil {
		return deleteAgain(ctx, c, o, cmdutil.KubeError(err, scope))
	}
	return nil
}

// deleteAgain deletes the database --create made when the copy failed, and says so.
func deleteAgain(ctx context.Context, c *kube.Client, o *Options, err error) error {
	state := fmt.Sprintf("%s is unchanged and the new %s was deleted again", o.Source, o.Target)
	if _, derr := database.Delete(context.WithoutCancel(ctx), c.Clientset, c.Namespace, o.Target, true); derr != nil {
		state = fmt.Sprintf("%s is unchanged; delete the half-made %s with `stackblaze db delete %s --delete-data --yes` (%v)", o.Source, o.Target, o.Target, derr)
	}
	return (&cmdutil.Error{Code: cmdutil.ExitCode(err), Err: err}).WithHint("%s; retry with the same command", state)
}
