// Package scale is `stackblaze db scale`: stop (0) and start (1) a database.
package scale

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of scale.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name     string
	Replicas int
	NoWait   bool
	Timeout  time.Duration
}

// NewCmdScale builds the command.
func NewCmdScale(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:               "scale NAME --replicas 0|1",
		Short:             "Stop (--replicas 0) or start (--replicas 1) a database; the data is kept",
		Example:           "stackblaze db scale mydb --replicas 0\nstackblaze db scale mydb --replicas 1",
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if !cmd.Flags().Changed("replicas") {
				return cmdutil.UsageErrorf("--replicas is required: 0 to stop the database, 1 to start it")
			}
			if opts.Replicas != 0 && opts.Replicas != 1 {
				return cmdutil.UsageErrorf("--replicas %d is not supported: use 0 (stop) or 1 (start)", opts.Replicas)
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	cmd.Flags().IntVar(&opts.Replicas, "replicas", 1, "0 to stop, 1 to start")
	cmd.Flags().BoolVar(&opts.NoWait, "no-wait", false, "return without waiting for the pod")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 5*time.Minute, "how long to wait for the pod")
	_ = cmd.RegisterFlagCompletionFunc("replicas", cobra.FixedCompletions([]string{"0", "1"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// Result is what scale reports.
type Result struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Replicas  int    `json:"replicas"`
	Previous  int    `json:"previous"`
	Ready     bool   `json:"ready"`
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
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	prev, err := database.Scale(ctx, c.Clientset, c.Namespace, o.Name, int32(o.Replicas))
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	res := Result{Name: o.Name, Namespace: c.Namespace, Replicas: o.Replicas, Previous: int(prev)}
	if int(prev) == o.Replicas {
		prog.Done("%s already has %d replica(s)", o.Name, o.Replicas)
	} else {
		prog.Done("Scaled %s from %d to %d", o.Name, prev, o.Replicas)
	}
	pod := database.PodName(o.Name)
	if !o.NoWait {
		wctx, cancel := cmdutil.TimeoutContext(ctx, o.Timeout)
		defer cancel()
		if o.Replicas == 0 {
			prog.Start("Waiting for pod %s to stop", pod)
			err = kube.WaitPodGone(wctx, c.Clientset, c.Namespace, pod)
		} else {
			prog.Start("Waiting for pod %s to be ready", pod)
			_, err = kube.WaitPodReady(wctx, c.Clientset, c.Namespace, pod)
		}
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				return cmdutil.Errorf(cmdutil.ExitTimeout, "database %s: pod %s did not reach %d replica(s) within %s", o.Name, pod, o.Replicas, o.Timeout).
					WithHint("run `stackblaze db status %s`", o.Name)
			}
			return cmdutil.KubeError(err, scope)
		}
		if o.Replicas == 0 {
			prog.Done("Pod %s stopped; the volume %s is kept", pod, database.PVCName(o.Name))
		} else {
			prog.Done("Pod %s is ready", pod)
			res.Ready = true
		}
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	switch {
	case o.Replicas == 0:
		fmt.Fprintf(o.IO.Out, "Database %s is stopped; its data is kept.\n", o.Name)
	case res.Ready:
		fmt.Fprintf(o.IO.Out, "Database %s is running.\n", o.Name)
	default:
		fmt.Fprintf(o.IO.Out, "Database %s is starting.\n", o.Name)
	}
	return nil
}
