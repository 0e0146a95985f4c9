package kube

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// ExecError is a command that ran in a pod and failed.
type ExecError struct {
	// Command names the command (argv[0], or what the caller calls it).
	Command string
	Pod     string
	Err     error
	Stderr  string
}

func (e *ExecError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if i := strings.LastIndex(msg, "\n"); i >= 0 && len(msg) > 2000 {
		msg = msg[i+1:]
	}
	if msg == "" {
		return fmt.Sprintf("%s in pod %s: %v", e.Command, e.Pod, e.Err)
	}
	return fmt.Sprintf("%s in pod %s: %v: %s", e.Command, e.Pod, e.Err, msg)
}
func (e *ExecError) Unwrap() error { return e.Err }

// Exec runs argv in a container of pod through the pods/exec subresource, as kubectl exec does:
// WebSocket first, SPDY when the server does not speak it. stdin may be nil.
func Exec(ctx context.Context, c *Client, ns, pod, container string, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if c.REST == nil {
		// A client on a fake clientset (unit tests) has no server to exec through.
		return fmt.Errorf("exec in pod %s: no connection to a cluster", pod)
	}
	req := c.Clientset.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container,
			Command:   argv,
			Stdin:     stdin != nil,
			Stdout:    stdout != nil,
			Stderr:    stderr != nil,
		}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(c.REST, "GET", req.URL().String())
	if err != nil {
		return err
	}
	spdy, err := remotecommand.NewSPDYExecutor(c.REST, "POST", req.URL())
	if err != nil {
		return err
	}
	// SPDY only when the WebSocket attempt never reached the command (a server or proxy without
	// WebSocket, or one that authorizes it as get and refuses it): an upgrade failure, or no byte
	// read from stdin nor written by the command. A command that ran and failed must not run a
	// second time with what is left of its input.
	var t traffic
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err) || !t.seen.Load()
	})
	if err != nil {
		return err
	}
	opts := remotecommand.StreamOptions{}
	if stdin != nil {
		opts.Stdin = t.reader(stdin)
	}
	if stdout != nil {
		opts.Stdout = t.writer(stdout)
	}
	if stderr != nil {
		opts.Stderr = t.writer(stderr)
	}
	err = exec.StreamWithContext(ctx, opts)
	if err != nil && execForbidden.MatchString(err.Error()) {
		// A refused upgrade comes back as text, not as the API server's Status: say which
		// permission is missing, as every other forbidden request does.
		return &ForbiddenError{Access: Access{Verb: "create", Resource: "pods", Subresource: "exec"}, Namespace: ns}
	}
	return err
}

// traffic records whether an exec's streams carried a byte.
type traffic struct{ seen atomic.Bool }

type trafficReader struct {
	t *traffic
	r io.Reader
}

func (r trafficReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.t.seen.Store(true)
	}
	return n, err
}

type trafficWriter struct {
	t *traffic
	w io.Writer
}

func (w trafficWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		w.t.seen.Store(true)
	}
	return w.w.Write(p)
}

func (t *traffic) reader(r io.Reader) io.Reader { return trafficReader{t, r} }
func (t *traffic) writer(w io.Writer) io.Writer { return trafficWriter{t, w} }

// execForbidden is the API server's refusal of the exec upgrade (SPDY, the fallback, is
// authorized as create).
var execForbidden = regexp.MustCompile(`is forbidden: .* cannot create resource "pods/exec"`)

// ExecOutput runs argv in a container of pod and returns its stdout; a failure is an *ExecError
// that carries stderr.
func ExecOutput(ctx context.Context, c *Client, ns, pod, container string, argv []string) (string, error) {
	var out, errb bytes.Buffer
	if err := Exec(ctx, c, ns, pod, container, argv, nil, &out, &errb); err != nil {
		return out.String(), &ExecError{Command: argv[0], Pod: pod, Err: err, Stderr: errb.String()}
	}
	return out.String(), nil
}
