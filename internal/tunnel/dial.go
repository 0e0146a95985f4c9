package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	gwebsocket "github.com/gorilla/websocket"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	httpstreamspdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	pfconstants "k8s.io/apimachinery/pkg/util/portforward"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport"
	"k8s.io/client-go/transport/websocket"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// spdyPingPeriod is how often a plain SPDY connection is pinged (client-go's SPDY dialer);
// over WebSocket it is portforward.PingPeriod.
const spdyPingPeriod = 5 * time.Second

// upgrade opens one upgraded connection to a pod's port-forward endpoint and starts SPDY on it
// (spdy.go): SPDY tunnelled over WebSocket first, plain SPDY when the API server refuses the
// WebSocket upgrade, with the same fallback rule as kubectl (an upgrade failure or an
// HTTPS-proxy error). After one refusal the tunnel goes straight to SPDY. Both upgrades are
// client-go's, taken apart where they would start client-go's SPDY connection instead of ours.
func (t *Tunnel) upgrade(ctx context.Context, u *url.URL) (*spdyConn, error) {
	if !t.spdyOnly.Load() {
		conn, err := t.upgradeWebSocket(ctx, u)
		if err == nil || !(httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)) {
			return conn, err
		}
		if !t.spdyOnly.Swap(true) {
			t.cfg.Logf("the API server refused the WebSocket upgrade (%v); using SPDY", err)
		}
	}
	return t.upgradeSPDY(ctx, u)
}

// upgradeWebSocket is client-go's portforward.NewSPDYOverWebsocketDialer with the request
// bound to ctx, so that a hung upgrade can be abandoned, and with our own WebSocket round
// tripper (websocketUpgrade), so that the connection under TLS has raw reads and writes.
func (t *Tunnel) upgradeWebSocket(ctx context.Context, u *url.URL) (*spdyConn, error) {
	transport, holder, err := websocketRoundTripperFor(t.cfg.REST)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	ws, err := websocket.Negotiate(transport, holder, req, pfconstants.WebsocketsSPDYTunnelingPortForwardV1)
	if err != nil {
		return nil, err
	}
	if ws == nil {
		return nil, fmt.Errorf("negotiated websocket connection is nil")
	}
	if proto := ws.Subprotocol(); proto != pfconstants.WebsocketsSPDYTunnelingPortForwardV1 {
		_ = ws.Close()
		return nil, protocolError(strings.TrimPrefix(proto, pfconstants.WebsocketsSPDYTunnelingPrefix))
	}
	return newSPDYConn(portforward.NewTunnelingConnectionWithLogger(logr.Discard(), ws), portforward.PingPeriod), nil
}

// websocketRoundTripperFor is client-go's websocket.RoundTripperFor with websocketUpgrade as
// the round tripper under the authentication wrappers.
func websocketRoundTripperFor(config *rest.Config) (http.RoundTripper, *websocketUpgrade, error) {
	tc, err := config.TransportConfig()
	if err != nil {
		return nil, nil, err
	}
	tlsConfig, err := transport.TLSConfigFor(tc)
	if err != nil {
		return nil, nil, err
	}
	proxy := config.Proxy
	if proxy == nil {
		proxy = utilnet.NewProxierWithNoProxyCIDR(http.ProxyFromEnvironment)
	}
	up := &websocketUpgrade{tlsConfig: tlsConfig, proxy: proxy}
	rt, err := transport.HTTPWrappersForConfig(tc, up)
	if err != nil {
		return nil, nil, err
	}
	return rt, up, nil
}

// websocketUpgrade is the round tripper of one WebSocket upgrade request (client-go's
// transport/websocket.RoundTripper, which websocket.Negotiate reads the connection from), with
// a TCP connection of rawConn under TLS. Like client-go's, it reports a refused handshake as
// an httpstream.UpgradeFailureError (the SPDY fallback's signal), with the API server's
// Status when it sent one, so that "forbidden" still reads as such.
type websocketUpgrade struct {
	tlsConfig *tls.Config
	proxy     func(*http.Request) (*url.URL, error)
	conn      *gwebsocket.Conn
}

// dataBufferSize is the WebSocket buffer size for port forwarding (client-go's).
const dataBufferSize = 32 << 10

func (u *websocketUpgrade) Connection() *gwebsocket.Conn { return u.conn }
func (u *websocketUpgrade) DataBufferSize() int          { return dataBufferSize }

func (u *websocketUpgrade) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
	protocols := req.Header[wsstream.WebSocketProtocolHeader]
	header := req.Header.Clone()
	delete(header, wsstream.WebSocketProtocolHeader)
	target := *req.URL
	switch target.Scheme {
	case "https":
		target.Scheme = "wss"
	case "http":
		target.Scheme = "ws"
	default:
		return nil, fmt.Errorf("unknown url scheme: %s", target.Scheme)
	}
	dialer := gwebsocket.Dialer{
		Proxy:           u.proxy,
		TLSClientConfig: u.tlsConfig,
		Subprotocols:    protocols,
		// Room for the channel byte, as client-go sizes them.
		ReadBufferSize:  dataBufferSize + 1024,
		WriteBufferSize: dataBufferSize + 1024,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return newRawConn(c), nil
		},
	}
	ws, resp, err := dialer.DialContext(req.Context(), target.String(), header)
	if err != nil {
		if errors.Is(err, gwebsocket.ErrBadHandshake) {
			return nil, &httpstream.UpgradeFailureError{Cause: handshakeError(err, resp)}
		}
		return nil, err
	}
	if !slices.Contains(protocols, ws.Subprotocol()) {
		_ = ws.Close()
		return nil, &httpstream.UpgradeFailureError{Cause: fmt.Errorf("invalid protocol, expected one of %q, got %q", protocols, ws.Subprotocol())}
	}
	u.conn = ws
	return resp, nil
}

// handshakeError describes a refused WebSocket handshake: the response's status, and the
// API server's Status (as an *apierrors.StatusError) or its text when it sent a body.
func handshakeError(err error, resp *http.Response) error {
	if resp == nil || resp.Status == "" {
		return err
	}
	defer resp.Body.Close()
	err = fmt.Errorf("%w (%s)", err, resp.Status)
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if readErr != nil {
		return fmt.Errorf("%w: unable to read error from server response", err)
	}
	var status metav1.Status
	if json.Unmarshal(body, &status) == nil && status.Kind == "Status" {
		return &apierrors.StatusError{ErrStatus: status}
	}
	if msg := strings.TrimSpace(string(body)); msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

// upgradeSPDY is kubectl's SPDY dialer (client-go's transport/spdy), keeping the upgraded
// connection for our SPDY client.
func (t *Tunnel) upgradeSPDY(ctx context.Context, u *url.URL) (*spdyConn, error) {
	tlsConfig, err := rest.TLSConfigFor(t.cfg.REST)
	if err != nil {
		return nil, err
	}
	proxy := http.ProxyFromEnvironment
	if t.cfg.REST.Proxy != nil {
		proxy = t.cfg.REST.Proxy
	}
	dialer, err := httpstreamspdy.NewRoundTripperWithConfig(httpstreamspdy.RoundTripperConfig{TLS: tlsConfig, Proxier: proxy})
	if err != nil {
		return nil, err
	}
	up := &spdyUpgrade{dialer: dialer}
	rt, err := rest.HTTPWrappersForConfig(t.cfg.REST, up)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Add(httpstream.HeaderProtocolVersion, portforward.PortForwardProtocolV1Name)
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("error sending request: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		!strings.Contains(strings.ToLower(resp.Header.Get(httpstream.HeaderConnection)), "upgrade") ||
		!strings.Contains(strings.ToLower(resp.Header.Get(httpstream.HeaderUpgrade)), "spdy/3.1") {
		if up.conn != nil {
			_ = up.conn.Close()
		}
		return nil, handshakeError(errors.New("unable to upgrade connection"), resp)
	}
	if proto := resp.Header.Get(httpstream.HeaderProtocolVersion); proto != portforward.PortForwardProtocolV1Name {
		_ = up.conn.Close()
		return nil, protocolError(proto)
	}
	return newSPDYConn(up.conn, spdyPingPeriod), nil
}

func protocolError(proto string) error {
	return fmt.Errorf("unable to negotiate protocol: client supports %q, server returned %q", portforward.PortForwardProtocolV1Name, proto)
}

// spdyUpgrade is the round tripper of one SPDY upgrade request, under client-go's
// authentication wrappers: client-go's SpdyRoundTripper dials (TLS, proxies) and sends the
// request, and the connection is kept once the response has been read.
type spdyUpgrade struct {
	dialer *httpstreamspdy.SpdyRoundTripper
	conn   net.Conn
}

func (u *spdyUpgrade) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	req.Header.Set(httpstream.HeaderUpgrade, httpstreamspdy.HeaderSpdy31)
	conn, err := u.dialer.Dial(req)
	if err != nil {
		return nil, err
	}
	// The response is read under the request's deadline; the dial already was.
	if deadline, ok := req.Context().Deadline(); ok {
		_ = conn.SetReadDeadline(deadline)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols && br.Buffered() > 0 {
		// The server speaks only when spoken to: nothing may follow the upgrade response yet.
		err = fmt.Errorf("unexpected data after the upgrade response")
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Time{})
	if u.conn != nil {
		_ = u.conn.Close() // a wrapper retried the request
	}
	u.conn = conn
	return resp, nil
}
