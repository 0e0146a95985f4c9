package cmdutil

import (
	"github.com/spf13/cobra"
	"github.com/stackblaze/stackblaze/internal/database"
)

// NoArgs refuses positional arguments with a usage error.
func NoArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return UsageErrorf("%s takes no arguments, got %q", cmd.CommandPath(), args[0]).
			WithHint("see `%s --help`", cmd.CommandPath())
	}
	return nil
}

// ExactName wants exactly one argument, a valid database name (database.ValidateName): anything
// else is a usage error, before the cluster is contacted.
func ExactName(cmd *cobra.Command, args []string) error {
	if err := OneName(cmd, args); err != nil {
		return err
	}
	if err := database.ValidateName(args[0]); err != nil {
		return KubeError(err, Scope{})
	}
	return nil
}

// OneName only wants exactly one argument: for create, which reports a bad name together with
// its other input problems.
func OneName(cmd *cobra.Command, args []string) error {
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

// TwoArgs wants exactly two arguments, named in what (like "SOURCE and TARGET").
func TwoArgs(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 2 {
			return UsageErrorf("%s needs %s, got %d arguments", cmd.CommandPath(), what, len(args)).
				WithHint("usage: %s", cmd.UseLine())
		}
		return nil
	}
}
