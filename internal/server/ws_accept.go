package server

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/duplexhq/duplex/msg"
)

// Accepting a WebSocket (/v1/ws, and /v1/echo with Upgrade): the upgrade
// and origin checks, the connection cap (Config.MaxWebSockets), the
// handshake (subprotocol, the compression answer of ws_deflate.go, small
// buffers through wsHijacker) and the hand-over to the connection (ws.go).

// wsSubprotocol is negotiated when the client offers it.
const wsSubprotocol = "duplex.v1"

// wsFrameSlack is the room a frame may take beyond --max-message: the
// command around a publish's data.
const wsFrameSlack = 4096

func (s *Server) maxWebSockets() int {
	switch n := s.cfg.MaxWebSockets; {
	case n > 0:
		return n
	case n < 0:
		return 0
	}
	if s.cfg.MaxConnections > 0 {
		return s.cfg.MaxConnections * 9 / 10
	}
	return 0
}

// handleWS serves GET /v1/ws.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	s.serveWS(w, r, false)
}

// handleEchoWS serves GET /v1/echo with Upgrade: websocket.
func (s *Server) handleEchoWS(w http.ResponseWriter, r *http.Request) {
	s.serveWS(w, r, true)
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, echo bool) {
	if !isWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		writeError(w, msg.Errorf(msg.CodeBadRequest, "%s needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)", r.URL.Path))
		return
	}
	if origin := r.Header.Get("Origin"); !s.originAllowed(r, origin) {
		writeError(w, msg.Errorf(msg.CodeForbidden, "origin %q may not open WebSockets here (see --allowed-origins)", truncate(origin)))
		return
	}
	ts, err := s.beginSession()
	if err != nil {
		writeError(w, err)
		return
	}
	n := s.ws.conns.Add(1)
	ts.atEnd(func() { s.ws.conns.Add(-1) })
	if max := s.maxWebSockets(); max > 0 && n > int64(max) {
		ts.close()
		w.Header().Set("Retry-After", "5")
		writeError(w, msg.Errorf(msg.CodeUnavailable, "too many WebSocket connections (at most %d)", max))
		return
	}
	if err := ts.open(r.Context(), s.hub.NewSession); err != nil {
		ts.close()
		writeError(w, err)
		return
	}
	sess := ts.sess

	// The connection's context carries the token's claims, and nothing
	// of the request, which the connection outlives.
	ctx := context.WithValue(context.Background(), claimsKey{}, r.Context().Value(claimsKey{}))
	wc := &wsConn{s: s, sess: sess, echo: echo, ctx: ctx, laterAt: -1, client: newClientID()}
	hj := &wsHijacker{ResponseWriter: w}
	// The library reads compressed frames only if it negotiated
	// compression: it is shown the outcome of ours (ws_deflate.go).
	mode := websocket.CompressionDisabled
	if !s.cfg.NoWSCompression {
		wc.deflate = negotiateDeflate(r.Header)
	}
	if wc.deflate.on {
		mode = websocket.CompressionContextTakeover // the offer shown says neither side takes it over
		hj.extensions = wc.deflate.response()
		wc.compressMin = max(s.cfg.WSCompressionMin, 0)
	}
	c, err := websocket.Accept(hj, withExtensions(r, wc.deflate), &websocket.AcceptOptions{
		Subprotocols:       []string{wsSubprotocol},
		InsecureSkipVerify: true, // originAllowed decided above
		OnPongReceived:     func(context.Context, []byte) { wc.alive.Store(true) },
		CompressionMode:    mode,
	})
	if err != nil {
		ts.close()
		s.log.Debug("websocket accept failed", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		return // Accept answered the request
	}
	wc.c, wc.nc = c, hj.nc
	wc.limit = int64(s.hub.Config().MaxMessage + wsFrameSlack)
	c.SetReadLimit(wc.limit)
	if rate := s.cfg.PublishRate; rate > 0 {
		wc.bucket = tokenBucket{rate: rate, burst: max(rate, 1), tokens: max(rate, 1), last: time.Now()}
	}
	wc.ts = ts
	// The handler returns, so net/http lets go of the request, its
	// buffers and its goroutine (with the stack it grew); the connection
	// lives on in the goroutines it starts when it has work, and ends
	// (finish) with ts.close, which Shutdown waits for (session.go).
	wc.start()
}

// withExtensions returns r as the WebSocket library is to see it: with the
// offer it should accept in place of the client's (d), or with none. r
// itself is left as it is.
func withExtensions(r *http.Request, d wsDeflate) *http.Request {
	if !d.on && r.Header.Get("Sec-WebSocket-Extensions") == "" {
		return r
	}
	lr := r.WithContext(r.Context())
	lr.Header = r.Header.Clone()
	lr.Header.Del("Sec-WebSocket-Extensions")
	if d.on {
		lr.Header.Set("Sec-WebSocket-Extensions", d.libraryOffer())
	}
	return lr
}

// wsHijacker hands the WebSocket library a wsNetConn and small buffers
// instead of net/http's 4 KiB ones: an idle connection should cost little,
// and the library's frame reads and writes need no large buffer (payloads
// bigger than the buffer bypass it).
type wsHijacker struct {
	http.ResponseWriter
	nc *wsNetConn
	// extensions is the Sec-WebSocket-Extensions answer (the library's
	// own would leave out what it does not know, server_max_window_bits).
	extensions string
}

// WriteHeader sends the handshake's answer with duplex's extensions.
func (h *wsHijacker) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		if h.extensions != "" {
			h.Header().Set("Sec-WebSocket-Extensions", h.extensions)
		} else {
			h.Header().Del("Sec-WebSocket-Extensions")
		}
	}
	h.ResponseWriter.WriteHeader(code)
}

// wsBufSize is the size of each connection's read and write buffer.
const wsBufSize = 512

func (h *wsHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Writer.Buffered() > 0 {
		if err := brw.Writer.Flush(); err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	h.nc = &wsNetConn{Conn: c}
	// Bytes the client sent right after its handshake may sit in net/http's
	// reader; the connection yields them first.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		h.nc.pre = bytes.Clone(b)
	}
	return h.nc, bufio.NewReadWriter(bufio.NewReaderSize(h.nc, wsBufSize), bufio.NewWriterSize(h.nc, wsBufSize)), nil
}

func (h *wsHijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }
