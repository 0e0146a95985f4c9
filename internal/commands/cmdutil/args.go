package cmdutil

import (
	"github.com/spf13/cobra"
)

// NoArgs refuses positional arguments with a usage error.
func NoArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return UsageErrorf("%s takes no arguments, got %q", cmd.CommandPath(), args[0]).
			WithHint("see `%s --help`", cmd.CommandPath())
	}
	return nil
}

// ExactName wants exactly one argument, a database name.
func ExactName(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 0:
		return UsageErrorf("%s needs a database name", cmd.CommandPath()).
			WithHint("usage: %s", cmd.UseLine())
	case 1:
		return nil
	default:
		return UsageErrorf("%s takes one database name, got %d arguments", cmd.CommandPath(), len(args)).
			WithHint("usage: %s", cmd.UseLine())
	}
}
