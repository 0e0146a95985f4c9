package kube

import (
	"errors"
	"fmt"
	"sort"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// FieldManager is the server-side apply field manager of every object stackblaze writes.
const FieldManager = "stackblaze"

// Client is a connection to one cluster and the namespace commands act in.
type Client struct {
	Clientset kubernetes.Interface
	REST      *rest.Config
	// Namespace is the namespace commands act in: the flag, then the context's namespace, then
	// the pod's namespace in-cluster, then "default".
	Namespace string
	// Context is the kubeconfig context's name ("" in-cluster).
	Context string
	// Server is the API server's URL, for error messages.
	Server string
}

// LoadOptions say which kubeconfig, context and namespace to use; empty means the default.
type LoadOptions struct {
	Kubeconfig string
	Context    string
	Namespace  string
	// UserAgent is sent with every request.
	UserAgent string
}

// NoContextError is returned when the requested context is not in the kubeconfig.
type NoContextError struct {
	Context   string
	Available []string
}

func (e *NoContextError) Error() string {
	return fmt.Sprintf("context %q is not in the kubeconfig", e.Context)
}

// ConfigFileError is a kubeconfig file that cannot be read.
type ConfigFileError struct{ Err error }

func (e *ConfigFileError) Error() string { return fmt.Sprintf("read kubeconfig: %v", e.Err) }
func (e *ConfigFileError) Unwrap() error { return e.Err }

// NoConfigError is returned when there is neither a kubeconfig nor an in-cluster config.
type NoConfigError struct{ Err error }

func (e *NoConfigError) Error() string {
	return fmt.Sprintf("no Kubernetes configuration found: %v", e.Err)
}
func (e *NoConfigError) Unwrap() error { return e.Err }

// Load reads the kubeconfig the way kubectl does (explicit path, then KUBECONFIG, then
// ~/.kube/config, then the in-cluster config) and builds a client. It does not contact the server.
func Load(o LoadOptions) (*Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.Kubeconfig != "" {
		rules.ExplicitPath = o.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)

	raw, err := cc.RawConfig()
	if err != nil {
		return nil, &ConfigFileError{Err: err}
	}
	contextName := raw.CurrentContext
	if o.Context != "" {
		contextName = o.Context
		if _, ok := raw.Contexts[o.Context]; !ok {
			return nil, &NoContextError{Context: o.Context, Available: contextNames(raw)}
		}
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) || errors.Is(err, rest.ErrNotInCluster) {
			return nil, &NoConfigError{Err: err}
		}
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	ns := o.Namespace
	if ns == "" {
		ns, _, err = cc.Namespace()
		if err != nil || ns == "" {
			ns = "default"
		}
	}
	if len(raw.Contexts) == 0 {
		contextName = "" // in-cluster
	}
	cfg = rest.CopyConfig(cfg)
	if o.UserAgent != "" {
		cfg.UserAgent = o.UserAgent
	}
	// The defaults (5 QPS) are too low for a create that applies seven objects in a row.
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("build client: %w", err)
	}
	return &Client{Clientset: cs, REST: cfg, Namespace: ns, Context: contextName, Server: cfg.Host}, nil
}

func contextNames(c clientcmdapi.Config) []string {
	names := make([]string, 0, len(c.Contexts))
	for n := range c.Contexts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
