package tunnel

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/httpstream"
	httpstreamspdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
)

// An API server that refuses the WebSocket upgrade (as older ones do) gets plain SPDY, and
// the tunnel remembers it: the next upgrade goes straight to SPDY.
func TestUpgradeFallsBackToSPDY(t *testing.T) {
	t.Parallel()
	var webSocketTries, spdyUpgrades int
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
			webSocketTries++
			http.Error(w, "websocket upgrades are not served here", http.StatusBadRequest)
		case httpstream.IsUpgradeRequest(r):
			spdyUpgrades++
			if _, err := httpstream.Handshake(r, w, []string{portforward.PortForwardProtocolV1Name}); err != nil {
				return
			}
			conn := httpstreamspdy.NewResponseUpgrader().UpgradeResponse(w, r, httpstream.NoOpNewStreamHandler)
			if conn == nil {
				return
			}
			<-conn.CloseChan()
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	var logs []string
	tun := &Tunnel{cfg: Config{
		REST: &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}},
		Logf: func(format string, args ...any) { logs = append(logs, format) },
	}}
	u, _ := url.Parse(srv.URL + "/api/v1/namespaces/ns/pods/db-0/portforward")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 2 {
		c, err := tun.upgrade(ctx, u)
		if err != nil {
			t.Fatalf("upgrade %d: %v", i, err)
		}
		if _, overWebSocket := c.conn.(*portforward.TunnelingConnection); overWebSocket {
			t.Fatalf("upgrade %d: over WebSocket", i)
		}
		st, err := c.openStreams(streamRequest{headers: []string{"streamType", "error", "port", "5432", "requestID", "0"}, out: io.Discard, fin: true})
		if err != nil {
			t.Fatalf("upgrade %d: open a stream: %v", i, err)
		}
		st[0].reset()
		_ = c.Close()
	}
	if webSocketTries != 1 || spdyUpgrades != 2 || !tun.spdyOnly.Load() {
		t.Fatalf("WebSocket tried %d times (want 1), SPDY upgrades %d (want 2), spdyOnly %v", webSocketTries, spdyUpgrades, tun.spdyOnly.Load())
	}
	if len(logs) != 1 || !strings.Contains(logs[0], "refused the WebSocket upgrade") {
		t.Fatalf("logs %q, want one line about the refused WebSocket upgrade", logs)
	}
}

// A refused WebSocket handshake keeps the API server's Status, so that callers can tell
// "forbidden" from other failures.
func TestHandshakeErrorKeepsTheStatus(t *testing.T) {
	t.Parallel()
	status := `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"db-0\" is forbidden: User \"ci\" cannot create resource \"pods/portforward\"","reason":"Forbidden","code":403}`
	resp := &http.Response{Status: "403 Forbidden", StatusCode: 403, Body: io.NopCloser(strings.NewReader(status))}
	if err := handshakeError(io.ErrUnexpectedEOF, resp); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "pods/portforward") {
		t.Fatalf("handshake error %v, want the API server's Forbidden status", err)
	}
	resp = &http.Response{Status: "400 Bad Request", StatusCode: 400, Body: io.NopCloser(strings.NewReader("no websockets here\n"))}
	if err := handshakeError(io.ErrUnexpectedEOF, resp); !strings.Contains(err.Error(), "400 Bad Request") || !strings.HasSuffix(err.Error(), ": no websockets here") {
		t.Fatalf("handshake error %q, want the status and the body", err)
	}
}

// A refused SPDY upgrade (after the WebSocket one) keeps the API server's Status too.
func TestSPDYUpgradeRefusalKeepsTheStatus(t *testing.T) {
	t.Parallel()
	status := `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"db-0\" is forbidden","reason":"Forbidden","code":403}`
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, status)
	}))
	defer srv.Close()
	tun := &Tunnel{cfg: Config{
		REST: &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}},
		Logf: func(string, ...any) {},
	}}
	u, _ := url.Parse(srv.URL + "/api/v1/namespaces/ns/pods/db-0/portforward")
	_, err := tun.upgrade(context.Background(), u)
	if !apierrors.IsForbidden(err) || !tun.spdyOnly.Load() {
		t.Fatalf("upgrade refused with 403 on both transports: %v (forbidden %v, fell back to SPDY %v)", err, apierrors.IsForbidden(err), tun.spdyOnly.Load())
	}
}
