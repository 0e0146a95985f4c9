package cmdutil

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/pg"
)

// SplitArgs separates [NAME] from the command after "--".
func SplitArgs(cmd *cobra.Command, args []string) (name string, command []string, err error) {
	dash := cmd.ArgsLenAtDash()
	if dash < 0 {
		return "", nil, UsageErrorf("%s needs the command to run after --", cmd.CommandPath()).
			WithHint("usage: %s", cmd.UseLine())
	}
	before, command := args[:dash], args[dash:]
	if len(command) == 0 {
		return "", nil, UsageErrorf("nothing to run after --").WithHint("usage: %s", cmd.UseLine())
	}
	switch len(before) {
	case 0:
	case 1:
		name = before[0]
		if err := database.ValidateName(name); err != nil {
			return "", nil, KubeError(err, Scope{})
		}
	default:
		return "", nil, UsageErrorf("one database name before --, got %d: %s", len(before), strings.Join(before, " ")).
			WithHint("usage: %s", cmd.UseLine())
	}
	return name, command, nil
}

// ConnectOptions are what Connect needs.
type ConnectOptions struct {
	IO         *output.IOStreams
	Kube       func() (*kube.Client, error)
	OpenTunnel TunnelOpener
	Now        func() time.Time
	Config     *Config
	Name       string
	Timeout    time.Duration
	// BeforeTunnel runs once the database is resolved (migrate takes its lock there).
	BeforeTunnel func(ctx context.Context, c *kube.Client, name string, prog *output.Progress) error
	// WaitReady waits until PostgreSQL accepts a login (nil: pg.WaitReady; tests replace it).
	WaitReady func(ctx context.Context, connString string) error
}

// Session is a resolved database with an open, ready tunnel.
type Session struct {
	Client      *kube.Client
	Name        string
	Credentials database.Credentials
	Tunnel      Tunnel
	Progress    *output.Progress
	IO          *output.IOStreams
	now         func() time.Time
	closed      bool
}

// ResolveName picks the database: the argument, then the configured default, then the only one
// in the namespace.
func ResolveName(ctx context.Context, c *kube.Client, arg string, cfg *Config) (string, error) {
	if arg != "" {
		return arg, nil
	}
	if cfg != nil && cfg.Database != "" {
		if err := database.ValidateName(cfg.Database); err != nil {
			return "", UsageErrorf("the configured database %q is not a valid name: %v", cfg.Database, err)
		}
		return cfg.Database, nil
	}
	dbs, err := database.List(ctx, c.Clientset, c.Namespace)
	if err != nil {
		return "", KubeError(err, ScopeOf(c, ""))
	}
	switch len(dbs) {
	case 1:
		return dbs[0].Name, nil
	case 0:
		return "", Errorf(ExitNotFound, "no database in namespace %s", c.Namespace).
			WithHint("create one with `stackblaze db create NAME`, or pick another namespace with -n")
	default:
		names := make([]string, len(dbs))
		for i, d := range dbs {
			names[i] = d.Name
		}
		sort.Strings(names)
		return "", UsageErrorf("namespace %s has %d databases; say which: %s", c.Namespace, len(dbs), strings.Join(names, ", ")).
			WithHint("pass NAME, or set STACKBLAZE_DATABASE (or database: in .stackblaze.yaml)")
	}
}

// Connect resolves the database, reads its credentials, opens a tunnel to its pod and waits until
// PostgreSQL accepts a login through it, printing a ✔ line for each step.
func Connect(ctx context.Context, o ConnectOptions) (*Session, error) {
	c, err := o.Kube()
	if err != nil {
		return nil, err
	}
	prog := o.IO.NewProgress(o.Now)
	name, err := ResolveName(ctx, c, o.Name, o.Config)
	if err != nil {
		return nil, err
	}
	scope := ScopeOf(c, name)
	if err := database.Exists(ctx, c.Clientset, c.Namespace, name); err != nil {
		return nil, KubeError(err, scope)
	}
	creds, err := database.ReadCredentials(ctx, c.Clientset, c.Namespace, name)
	if err != nil {
		return nil, KubeError(err, scope)
	}
	prog.Done("Database %s resolved (namespace %s)", name, c.Namespace)
	if o.BeforeTunnel != nil {
		if err := o.BeforeTunnel(ctx, c, name, prog); err != nil {
			return nil, err
		}
	}
	t, err := OpenReadyTunnel(ctx, ReadyTunnel{
		Progress: prog, Scope: scope, Target: database.PodName(name), Login: creds, Timeout: o.Timeout, Steps: true,
		WaitReady: o.WaitReady,
		// The tunnel lives until Close, not until ctx: a Ctrl-C goes to the command first, and the
		// tunnel must outlast the command's own shutdown.
		Open: func() (Tunnel, error) {
			return o.OpenTunnel(context.WithoutCancel(ctx), c, c.Namespace, database.PodName(name), database.Port)
		},
	})
	if err != nil {
		return nil, err
	}
	return &Session{Client: c, Name: name, Credentials: creds, Tunnel: t, Progress: prog, IO: o.IO, now: o.Now}, nil
}

// Login is the tunnel's login for pgx.
func (s *Session) Login() pg.Login {
	return pg.Login{Host: "127.0.0.1", Port: s.Tunnel.Port(), User: s.Credentials.Username, Password: s.Credentials.Password, Database: s.Credentials.Database}
}

// Env is the process environment with the database's variables set (and any inherited PG*
// variables replaced).
func (s *Session) Env() []string {
	vars := database.PGEnv(s.Credentials, s.Tunnel.Port())
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := vars[k]; ours || strings.HasPrefix(k, "PG") {
			continue
		}
		env = append(env, kv)
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// Close closes the tunnel once and says so.
func (s *Session) Close() {
	if s.closed {
		return
	}
	s.closed = true
	_ = s.Tunnel.Close()
	s.Progress.Done("Tunnel closed")
}

// Result is what running a command reports.
type Result struct {
	Database   string               `json:"database"`
	Namespace  string               `json:"namespace"`
	Command    string               `json:"command"`
	ExitCode   int                  `json:"exitCode"`
	Duration   float64              `json:"durationSeconds"`
	Migrations *pg.MigrationSummary `json:"migrations,omitempty"`
	err        *Error
}

// Exec runs the command with the session's environment, streams passed through, SIGINT and SIGTERM
// forwarded, and returns its exit code: 128+N when it died of signal N, 127 when it was not found,
// 126 when it could not be run.
func (s *Session) Exec(argv []string) *Result {
	res := &Result{Database: s.Name, Namespace: s.Client.Namespace, Command: argv[0]}
	s.Progress.Stop()
	start := s.now()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.IO.In, s.IO.Out, s.IO.ErrOut
	cmd.Env = s.Env()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		res.ExitCode = 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			res.ExitCode = 127
		}
		res.err = &Error{Code: res.ExitCode, Err: fmt.Errorf("cannot run %s: %v", argv[0], unwrapExec(err))}
		if res.ExitCode == 127 {
			res.err.Hint = fmt.Sprintf("is %s installed and on PATH?", argv[0])
		}
		return res
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				_ = cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	res.Duration = s.now().Sub(start).Seconds()
	res.ExitCode = exitCode(cmd, err)
	if res.ExitCode == 0 {
		s.Progress.Done("Command finished: exit code 0 (%s)", round(res.Duration))
	} else {
		s.Progress.Warn("Command finished: exit code %d (%s)", res.ExitCode, round(res.Duration))
		res.err = &Error{Code: res.ExitCode, Err: fmt.Errorf("%s exited with code %d", argv[0], res.ExitCode), Silent: true}
	}
	return res
}

func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}

func exitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState == nil {
		return 1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if code := cmd.ProcessState.ExitCode(); code >= 0 {
		return code
	}
	if err != nil {
		return 1
	}
	return 0
}

func round(seconds float64) string {
	return (time.Duration(seconds*1000) * time.Millisecond).String()
}

// Finish prints the result document for -o json and returns Err.
func (r *Result) Finish(ios *output.IOStreams) error {
	if ios.IsJSON() {
		if err := output.JSON(ios.Out, r); err != nil {
			return err
		}
	}
	return r.Err()
}

// Err turns a command that failed, or could not start, into the tool's exit code (nil on 0).
func (r *Result) Err() error {
	if r.err == nil {
		return nil
	}
	return r.err
}
