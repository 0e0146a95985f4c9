// Package commands is the command tree: the root command, its global flags and configuration,
// and Main, which runs it and turns errors into exit codes. The commands themselves live in one
// package per verb.
package commands

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/buildinfo"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/commands/db"
	"github.com/stackblaze/stackblaze/internal/commands/exitcodes"
	"github.com/stackblaze/stackblaze/internal/commands/version"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/pg"
)

// NewFactory returns the production Factory for these streams.
func NewFactory(ios *output.IOStreams) *cmdutil.Factory {
	f := &cmdutil.Factory{
		IO:          ios,
		Now:         time.Now,
		CheckLogin:  pg.CheckLogin,
		InitBackups: database.InitBackupRepository,
		OpenTunnel:  openTunnel,
		Version:     buildInfo(),
	}
	f.Kube = cmdutil.KubeFromConfig(f, "stackblaze/"+f.Version.Version)
	return f
}

func buildInfo() (b cmdutil.BuildInfo) {
	b = cmdutil.BuildInfo{Version: "dev", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	defer func() {
		// Values injected by the release build win over what the toolchain recorded.
		if buildinfo.Version != "" {
			b.Version = buildinfo.Version
		}
		if buildinfo.Commit != "" {
			b.Commit = buildinfo.Commit
		}
		b.Date = buildinfo.Date
	}()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			b.Version = v
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				b.Commit = s.Value
			}
		}
	}
	return b
}

// NewCmdRoot builds the command tree.
func NewCmdRoot(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stackblaze <command>",
		Short: "Manage StackBlaze PostgreSQL databases on Kubernetes",
		Long: strings.TrimSpace(`
stackblaze manages the PostgreSQL databases of a StackBlaze project (a Kubernetes namespace):
create them, list them, look at them, stop and start them, delete them.

It talks to the cluster like kubectl does: --kubeconfig, --context and -n/--namespace.
Settings come from flags, then STACKBLAZE_* environment variables, then the project's
.stackblaze.yaml, then your own $XDG_CONFIG_HOME/stackblaze/config.yaml.

A project's .stackblaze.yaml comes with the repository, so it may set only ` + strings.Join(cmdutil.ProjectKeys(), ", ") + `.
The cluster (kubeconfig, context), the image, the DNS zone, backups in S3 and yes come only
from your own settings; a .stackblaze.yaml that sets them is refused (exit 2).`),
		Example: strings.TrimSpace(`
stackblaze db create mydb --version 17 --storage 10Gi --plan standard
stackblaze db list -o json
stackblaze help exit-codes`),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cmdutil.UsageErrorf("unknown command %q for stackblaze", args[0]).WithHint("run `stackblaze --help` for the commands")
			}
			return nil
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			src := f.ConfigSources
			if src.Getenv == nil {
				src.Getenv = f.IO.Getenv
			}
			cfg, err := cmdutil.LoadConfig(cmd.Flags(), src)
			if err != nil {
				return err
			}
			f.Config = cfg
			f.IO.Configure(cfg.Output, cfg.NoColor)
			if cfg.Verbose {
				fmt.Fprintf(f.IO.ErrOut, "config: %s\n", cfg)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.SetOut(f.IO.Out)
	cmd.SetErr(f.IO.ErrOut)
	cmd.SetIn(f.IO.In)
	cmd.CompletionOptions.HiddenDefaultCmd = false

	pf := cmd.PersistentFlags()
	help := map[string]string{}
	for _, k := range cmdutil.ConfigKeys {
		help[k.Key] = k.Help
	}
	pf.String("kubeconfig", "", help["kubeconfig"])
	pf.String("context", "", help["context"])
	pf.StringP("namespace", "n", "", help["namespace"])
	pf.StringP("output", "o", "text", help["output"])
	pf.Bool("no-color", false, help["no_color"])
	pf.BoolP("verbose", "v", false, help["verbose"])
	pf.Bool("yes", false, help["yes"])
	pf.String("dns-zone", "", help["dns_zone"])
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))

	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return cmdutil.UsageErrorf("%v", err).WithHint("see `%s --help`", c.CommandPath())
	})

	cmd.AddCommand(version.NewCmdVersion(f, nil))
	cmd.AddCommand(db.NewCmdDB(f))

	helpCmd := newHelpCmd(cmd)
	helpCmd.AddCommand(exitcodes.NewCmdExitCodes(f))
	cmd.SetHelpCommand(helpCmd)
	return cmd
}

// newHelpCmd is cobra's help command with room for help topics (exit-codes).
func newHelpCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command | topic]",
		Short: "Help about any command, or a topic: exit-codes",
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var out []cobra.Completion
			cmd, _, err := root.Find(args)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					out = append(out, sub.Name())
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || target == nil || len(rest) > 0 {
				return cmdutil.UsageErrorf("unknown help topic %q", strings.Join(args, " ")).
					WithHint("run `stackblaze --help` for the commands, `stackblaze help exit-codes` for the exit codes")
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
	}
}

// Main runs the command line and returns the exit code. It never calls os.Exit.
func Main(ctx context.Context, ios *output.IOStreams, args []string) int {
	return Run(ctx, NewFactory(ios), args)
}

// Run runs the command line with a given Factory (tests use this) and returns the exit code.
func Run(ctx context.Context, f *cmdutil.Factory, args []string) int {
	root := NewCmdRoot(f)
	root.SetArgs(args)
	_, err := root.ExecuteContextC(ctx)
	if err == nil {
		return cmdutil.ExitOK
	}
	err = normalize(ctx, err)
	PrintError(f.IO, err)
	return cmdutil.ExitCode(err)
}

// normalize turns cobra's own errors (unknown command or flag, bad args) into usage errors and an
// interrupted context into exit 130.
func normalize(ctx context.Context, err error) error {
	var e *cmdutil.Error
	if errors.As(err, &e) {
		if ctx.Err() != nil && e.Code == cmdutil.ExitError {
			return &cmdutil.Error{Code: cmdutil.ExitInterrupted, Err: err}
		}
		return err
	}
	if ctx.Err() != nil {
		return &cmdutil.Error{Code: cmdutil.ExitInterrupted, Err: fmt.Errorf("interrupted: %w", err)}
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "required flag", "accepts ", "requires ", "invalid argument", "flag needs an argument"} {
		if strings.HasPrefix(msg, p) {
			return cmdutil.UsageErrorf("%s", msg).WithHint("see `stackblaze --help`")
		}
	}
	return err
}

// PrintError writes an error and its hint to stderr.
func PrintError(ios *output.IOStreams, err error) {
	if e := (*cmdutil.Error)(nil); errors.As(err, &e) && e.Silent {
		return
	}
	t := ios.Theme()
	fmt.Fprintf(ios.ErrOut, "%s %s\n", t.Error.Render("error:"), err)
	if h := cmdutil.Hint(err); h != "" {
		for _, line := range strings.Split(h, "\n") {
			fmt.Fprintf(ios.ErrOut, "  %s\n", line)
		}
	}
}
