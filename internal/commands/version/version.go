// Package version is `stackblaze version`. It never reads a kubeconfig or builds a client.
package version

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of version.
type Options struct {
	IO   *output.IOStreams
	Info cmdutil.BuildInfo
}

// NewCmdVersion builds the command.
func NewCmdVersion(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO}
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of stackblaze",
		Example: "stackblaze version\nstackblaze version -o json",
		Args:    cmdutil.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Info = f.Version
			if runF != nil {
				return runF(opts)
			}
			return run(opts)
		},
	}
}

func run(opts *Options) error {
	if opts.IO.IsJSON() {
		return output.JSON(opts.IO.Out, opts.Info)
	}
	i := opts.Info
	fmt.Fprintf(opts.IO.Out, "stackblaze %s", i.Version)
	if i.Commit != "" {
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		fmt.Fprintf(opts.IO.Out, " (%s)", c)
	}
	if i.Date != "" {
		fmt.Fprintf(opts.IO.Out, " built %s", i.Date)
	}
	fmt.Fprintf(opts.IO.Out, " %s %s\n", i.GoVersion, i.Platform)
	return nil
}
