package cmdutil

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
)

// CompleteDatabaseNames completes the first argument with the databases of the namespace. It
// writes nothing but the candidates.
func CompleteDatabaseNames(f *Factory) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := CompletionClient(f, cmd)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
		defer cancel()
		dbs, err := database.List(ctx, c.Clientset, c.Namespace)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, d := range dbs {
			if strings.HasPrefix(d.Name, toComplete) {
				out = append(out, d.Name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// CompleteWorkloads completes a workload flag (attach --to, detach --from) with the namespace's
// Deployments and StatefulSets as deployment/NAME and statefulset/NAME. Database StatefulSets are
// left out: a database is not attached to itself.
func CompleteWorkloads(f *Factory) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		c, err := CompletionClient(f, cmd)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
		defer cancel()
		var out []cobra.Completion
		if deps, err := c.Clientset.AppsV1().Deployments(c.Namespace).List(ctx, metav1.ListOptions{}); err == nil {
			for _, d := range deps.Items {
				out = append(out, "deployment/"+d.Name)
			}
		}
		if stss, err := c.Clientset.AppsV1().StatefulSets(c.Namespace).List(ctx, metav1.ListOptions{}); err == nil {
			for _, s := range stss.Items {
				if !database.IsOwnedBy(s.Labels, s.Name) {
					out = append(out, "statefulset/"+s.Name)
				}
			}
		}
		var matched []cobra.Completion
		for _, w := range out {
			if strings.HasPrefix(w, toComplete) {
				matched = append(matched, w)
			}
		}
		return matched, cobra.ShellCompDirectiveNoFileComp
	}
}

// CompletionClient builds the client for a completion function. Cobra runs the root's
// PersistentPreRun for its hidden __complete command, whose flags are not parsed, so the
// configuration is loaded again here from the flags of the command being completed (so that
// `stackblaze db status -n prod <TAB>` lists prod's databases).
func CompletionClient(f *Factory, cmd *cobra.Command) (*kube.Client, error) {
	src := f.ConfigSources
	if src.Getenv == nil && f.IO != nil {
		src.Getenv = f.IO.Getenv
	}
	cfg, err := LoadConfig(cmd.Flags(), src)
	if err != nil {
		return nil, err
	}
	f.Config = cfg
	return f.Kube()
}
