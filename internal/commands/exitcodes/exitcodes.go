// Package exitcodes is the help topic `stackblaze help exit-codes`.
package exitcodes

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/output"
)

// NewCmdExitCodes builds the help topic.
func NewCmdExitCodes(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:     "exit-codes",
		Short:   "The exit codes of stackblaze and what they mean",
		Example: "stackblaze help exit-codes\nstackblaze help exit-codes -o json",
		Args:    cmdutil.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return Print(f.IO)
		},
	}
}

// Print writes the exit code table.
func Print(ios *output.IOStreams) error {
	if ios.IsJSON() {
		return output.JSON(ios.Out, cmdutil.ExitCodes)
	}
	fmt.Fprintln(ios.Out, "stackblaze exits with one of these codes (scripts may rely on them):")
	fmt.Fprintln(ios.Out)
	rows := make([][]string, 0, len(cmdutil.ExitCodes))
	for _, c := range cmdutil.ExitCodes {
		rows = append(rows, []string{"  " + strconv.Itoa(c.Code), c.Name, c.Meaning})
	}
	if err := output.Table(ios.Out, []string{"  CODE", "NAME", "MEANING"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(ios.Out)
	fmt.Fprintln(ios.Out, "`stackblaze db migrate NAME -- CMD` exits with CMD's own exit code (128+N when CMD dies of signal N).")
	return nil
}
