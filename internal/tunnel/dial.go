package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/httpstream"
	httpstreamspdy "k8s.io/apimachinery/pkg/util/httpstream/spdy"
	pfconstants "k8s.io/apimachinery/pkg/util/portforward"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/transport/websocket"
)

// upgrade opens one upgraded connection to a pod's port-forward endpoint: SPDY tunnelled over
// WebSocket first, plain SPDY when the API server refuses the WebSocket upgrade, with the same
// fallback rule as kubectl (an upgrade failure or an HTTPS-proxy error). After one refusal the
// tunnel goes straight to SPDY.
//
// The WebSocket half is client-go's portforward.NewSPDYOverWebsocketDialer taken apart
// (websocket.Negotiate, portforward.NewTunnelingConnection, spdy.NewClientConnectionWithPings)
// for two reasons: the request carries ctx, so that a hung upgrade can be abandoned; and a
// frameWriter sits between SPDY and the WebSocket, see there.
func (t *Tunnel) upgrade(ctx context.Context, u *url.URL) (httpstream.Connection, string, error) {
	if !t.spdyOnly.Load() {
		conn, proto, err := t.upgradeWebSocket(ctx, u)
		if err == nil || !(httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)) {
			return conn, proto, err
		}
		if !t.spdyOnly.Swap(true) {
			t.cfg.Logf("the API server refused the WebSocket upgrade (%v); using SPDY", err)
		}
	}
	return t.upgradeSPDY(u)
}

func (t *Tunnel) upgradeWebSocket(ctx context.Context, u *url.URL) (httpstream.Connection, string, error) {
	transport, holder, err := websocket.RoundTripperFor(t.cfg.REST)
	if err != nil {
		return nil, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", err
	}
	ws, err := websocket.Negotiate(transport, holder, req, pfconstants.WebsocketsSPDYTunnelingPortForwardV1)
	if err != nil {
		return nil, "", err
	}
	if ws == nil {
		return nil, "", fmt.Errorf("negotiated websocket connection is nil")
	}
	proto := strings.TrimPrefix(ws.Subprotocol(), pfconstants.WebsocketsSPDYTunnelingPrefix)
	tc := portforward.NewTunnelingConnectionWithLogger(logr.Discard(), ws)
	conn, err := httpstreamspdy.NewClientConnectionWithPings(&frameWriter{Conn: tc}, portforward.PingPeriod)
	if err != nil {
		_ = tc.Close()
		return nil, "", err
	}
	return conn, proto, nil
}

// upgradeSPDY is kubectl's SPDY dialer. Its round tripper holds the one connection it
// upgrades, so it is built anew for each upgrade.
func (t *Tunnel) upgradeSPDY(u *url.URL) (httpstream.Connection, string, error) {
	transport, upgrader, err := spdy.RoundTripperFor(t.cfg.REST)
	if err != nil {
		return nil, "", err
	}
	return spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
}

// frameWriter hands the connection below it whole SPDY frames. The SPDY framer writes each
// frame in pieces (a data frame as stream ID, flags and length, then the payload: three
// writes), and under it every write becomes a WebSocket message, a TLS record and a system
// call, for us and again for the API server and the node at the other end. Collecting the
// pieces until a frame is complete (SPDY frames carry their length in bytes 5 to 7 of an
// 8-byte header) makes it one of each, which is most of the CPU a small query costs.
// The framer writes one frame at a time under its own lock; the mutex here is for safety.
type frameWriter struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

const spdyHeaderLen = 8

func (w *frameWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	complete := 0
	for {
		rest := w.buf[complete:]
		if len(rest) < spdyHeaderLen {
			break
		}
		n := spdyHeaderLen + (int(rest[5])<<16 | int(rest[6])<<8 | int(rest[7]))
		if len(rest) < n {
			break
		}
		complete += n
	}
	if complete == 0 {
		return len(p), nil
	}
	_, err := w.Conn.Write(w.buf[:complete])
	left := copy(w.buf, w.buf[complete:])
	w.buf = w.buf[:left]
	if err != nil {
		return 0, err
	}
	return len(p), nil
}
