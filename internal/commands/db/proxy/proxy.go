// Package proxy is `stackblaze db proxy NAME`: a long-lived tunnel for people at a terminal.
package proxy

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/tunnel"
)

// Options are the inputs of proxy.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name         string
	Port         int
	ShowPassword bool
	Timeout      time.Duration
	// Ready is called once the proxy accepts connections (tests use it).
	Ready func(Result)
	// Logf receives the tunnel's diagnostics (with -v: connections that failed, pods replaced).
	Logf func(format string, args ...any)
	// WaitReady waits until PostgreSQL accepts a login (nil: pg.WaitReady; tests replace it).
	WaitReady func(ctx context.Context, connString string) error
}

// Result describes the running proxy.
type Result struct {
	Database string `json:"database"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	User     string `json:"user"`
	Name     string `json:"dbname"`
	URL      string `json:"url"`
}

// NewCmdProxy builds the command.
func NewCmdProxy(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "proxy NAME [--port N]",
		Short: "Hold a tunnel to the database open on 127.0.0.1 until Ctrl-C",
		Long: `Hold a port-forward tunnel to the database open on 127.0.0.1 until Ctrl-C, for a GUI client or
a local app. The tunnel survives the database's pod being replaced: new connections reach the new
pod once it is ready. The connection string is printed with the password masked unless
--show-password is given.`,
		Example:           "stackblaze db proxy mydb\nstackblaze db proxy mydb --port 15432",
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			if opts.Port < 0 || opts.Port > 65535 {
				return cmdutil.UsageErrorf("--port %d is not a TCP port: use 1-65535, or 0 for a free one", opts.Port)
			}
			opts.Logf = func(string, ...any) {}
			if f.Config != nil && f.Config.Verbose {
				prog := opts.IO.NewProgress(opts.Now)
				opts.Logf = func(format string, args ...any) { prog.Info("tunnel: "+format, args...) }
			}
			if runF != nil {
				return runF(opts)
			}
			return runProxy(cmd.Context(), opts)
		},
	}
	cmd.Flags().IntVar(&opts.Port, "port", 0, "local port on 127.0.0.1 (default: a free port)")
	cmd.Flags().BoolVar(&opts.ShowPassword, "show-password", false, "print the connection string with the password")
	cmdutil.TimeoutFlag(cmd, &opts.Timeout, 2*time.Minute, "how long to wait for the database at start")
	return cmd
}

func runProxy(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	if err := database.Exists(ctx, c.Clientset, c.Namespace, o.Name); err != nil {
		return cmdutil.KubeError(err, scope)
	}
	creds, err := database.ReadCredentials(ctx, c.Clientset, c.Namespace, o.Name)
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	t, err := cmdutil.OpenReadyTunnel(ctx, cmdutil.ReadyTunnel{
		Progress: prog, Scope: scope, Target: o.Name, Login: creds, Timeout: o.Timeout, WaitReady: o.WaitReady,
		Open: func() (cmdutil.Tunnel, error) {
			return tunnel.Open(ctx, tunnel.Config{REST: c.REST, Client: c.Clientset, LocalPort: o.Port, Logf: o.Logf},
				tunnel.Target{Namespace: c.Namespace, Selector: database.ManagedSelector(o.Name) + ",statefulset.kubernetes.io/pod-name=" + database.PodName(o.Name), Port: database.Port})
		},
	})
	if err != nil {
		return err
	}
	defer t.Close()
	prog.Stop()
	shown := url.URL{Scheme: "postgresql", User: url.UserPassword(creds.Username, "********"),
		Host: t.Addr(), Path: "/" + creds.Database, RawQuery: "sslmode=disable"}
	if o.ShowPassword {
		shown.User = url.UserPassword(creds.Username, creds.Password)
	}
	res := Result{Database: o.Name, Host: "127.0.0.1", Port: t.Port(), User: creds.Username, Name: creds.Database, URL: unescapeMask(shown.String())}
	if o.IO.IsJSON() {
		if err := output.JSON(o.IO.Out, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(o.IO.Out, res.URL)
		prog.Done("Proxying %s on %s: press Ctrl-C to stop", o.Name, t.Addr())
	}
	if o.Ready != nil {
		o.Ready(res)
	}
	<-ctx.Done()
	prog.Done("Tunnel closed")
	return nil
}

// unescapeMask keeps the mask readable: url.URL escapes '*' in user info.
func unescapeMask(s string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}
