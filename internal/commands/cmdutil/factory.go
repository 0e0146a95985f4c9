// Package cmdutil holds what every command shares: the Factory with its lazy dependencies, the
// typed configuration, exit codes, and the errors that carry them.
package cmdutil

import (
	"context"
	"sync"
	"time"

	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
	"github.com/stackblaze/stackblaze/internal/pg"
)

// Tunnel is an open port-forward to a pod.
type Tunnel = kube.Tunnel

// TunnelOpener opens a port-forward tunnel to a pod's port on 127.0.0.1.
type TunnelOpener = kube.TunnelOpener

// Factory gives commands their dependencies. Everything that touches the cluster is a lazy func:
// `version`, `completion` and help never build a client.
type Factory struct {
	IO  *output.IOStreams
	Now func() time.Time

	// Config is filled in by the root command before any command runs.
	Config *Config

	// Kube builds the Kubernetes client on first use, from Config.
	Kube func() (*kube.Client, error)
	// OpenTunnel opens a port-forward; tests replace it.
	OpenTunnel TunnelOpener
	// CheckLogin checks that a login works; tests replace it.
	CheckLogin func(ctx context.Context, l pg.Login) error
	// InitBackups prepares a new database's backup repository (in its pod); tests replace it.
	InitBackups func(ctx context.Context, c *kube.Client, name string) error

	// ConfigSources says where to read the config files from; tests point it elsewhere.
	ConfigSources ConfigSources

	// Version is the build's version information.
	Version BuildInfo
}

// BuildInfo describes the binary.
type BuildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Date      string `json:"date,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// KubeFromConfig returns a memoized Kube func that loads the client from f.Config on first call.
func KubeFromConfig(f *Factory, userAgent string) func() (*kube.Client, error) {
	var (
		once sync.Once
		c    *kube.Client
		err  error
	)
	return func() (*kube.Client, error) {
		once.Do(func() {
			cfg := f.Config
			if cfg == nil {
				cfg = &Config{}
			}
			c, err = kube.Load(kube.LoadOptions{
				Kubeconfig: cfg.Kubeconfig,
				Context:    cfg.Context,
				Namespace:  cfg.Namespace,
				UserAgent:  userAgent,
			})
			if err != nil {
				err = KubeError(err, Scope{Context: cfg.Context})
			}
		})
		return c, err
	}
}

// ScopeOf is the Scope of a command acting on a database through c.
func ScopeOf(c *kube.Client, database string) Scope {
	if c == nil {
		return Scope{Database: database}
	}
	return Scope{Context: c.Context, Server: c.Server, Namespace: c.Namespace, Database: database}
}
