// Package delete is `stackblaze db delete`.
package delete

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

// Options are the inputs of delete.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name       string
	DeleteData bool
	Yes        bool
	NoWait     bool
	Timeout    time.Duration
}

// NewCmdDelete builds the command.
func NewCmdDelete(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a database (its volume and credentials are kept unless --delete-data)",
		Long: strings.TrimSpace(`
Delete a database's StatefulSet, Services, NetworkPolicy and init ConfigMap.

The volume claim (data-NAME-0) and the Secrets NAME-credentials and NAME-superuser are kept:
the data directory only accepts the passwords they hold, so that a later ` + "`db create NAME`" + `
with the same spec finds the data again. --delete-data deletes them too; that cannot be undone.

On a terminal delete asks first; elsewhere (or when CI is set) it needs --yes.`),
		Example:           "stackblaze db delete mydb\nstackblaze db delete mydb --yes --delete-data",
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			opts.Yes = cmdutil.AssumeYes(f, opts.Yes)
			if err := confirmation(opts.Name).Refuse(opts.IO, opts.Yes); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.DeleteData, "delete-data", false, "also delete the volume and the credentials (the data is lost)")
	cmd.Flags().BoolVar(&opts.NoWait, "no-wait", false, "return without waiting for the pod to stop")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 5*time.Minute, "how long to wait for the pod to stop")
	return cmd
}

func confirmation(name string) cmdutil.Confirmation {
	return cmdutil.Confirmation{
		Action:   "delete database " + name,
		Hint:     "add --yes to delete it",
		Declined: "not deleted: no confirmation",
	}
}

// Result is what delete reports.
type Result struct {
	Name      string   `json:"name"`
	Namespace string   `json:"namespace"`
	Deleted   []string `json:"deleted"`
	Kept      []string `json:"kept"`
	// Foreign are objects with one of the database's names that stackblaze did not make: left
	// alone.
	Foreign []string `json:"foreign"`
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	if err := database.Exists(ctx, c.Clientset, c.Namespace, o.Name); err != nil {
		return cmdutil.KubeError(err, scope)
	}
	q := fmt.Sprintf("Delete database %s in namespace %s (the volume is kept)?", o.Name, c.Namespace)
	if o.DeleteData {
		q = fmt.Sprintf("Delete database %s in namespace %s AND ITS DATA?", o.Name, c.Namespace)
	}
	if err := confirmation(o.Name).Ask(o.IO, o.Yes, q); err != nil {
		return err
	}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	prog.Start("Deleting %s", o.Name)
	d, err := database.Delete(ctx, c.Clientset, c.Namespace, o.Name, o.DeleteData)
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	prog.Done("Deleted %s", strings.Join(d.Deleted, ", "))
	if !o.NoWait {
		wctx, cancel := cmdutil.TimeoutContext(ctx, o.Timeout)
		defer cancel()
		prog.Start("Waiting for pod %s to stop", database.PodName(o.Name))
		if err := kube.WaitPodGone(wctx, c.Clientset, c.Namespace, database.PodName(o.Name)); err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				return cmdutil.Errorf(cmdutil.ExitTimeout, "database %s: pod %s still exists after %s", o.Name, database.PodName(o.Name), o.Timeout)
			}
			return cmdutil.KubeError(err, scope)
		}
		prog.Done("Pod %s stopped", database.PodName(o.Name))
	}
	if len(d.Kept) > 0 {
		prog.Info("Kept %s; delete them with `stackblaze db delete %s --delete-data`", strings.Join(d.Kept, ", "), o.Name)
	}
	if len(d.Foreign) > 0 {
		prog.Warn("Left %s alone: not made by stackblaze for %s", strings.Join(d.Foreign, ", "), o.Name)
	}
	res := Result{Name: o.Name, Namespace: c.Namespace, Deleted: nonNil(d.Deleted), Kept: nonNil(d.Kept), Foreign: nonNil(d.Foreign)}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	if o.DeleteData {
		fmt.Fprintf(o.IO.Out, "Database %s deleted with its data.\n", o.Name)
	} else {
		fmt.Fprintf(o.IO.Out, "Database %s deleted; its volume %s and its credentials are kept.\n", o.Name, database.PVCName(o.Name))
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
