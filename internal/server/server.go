package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// Config configures a Server. The zero value of each field but Hub is
// usable.
type Config struct {
	// Hub is what the server serves. Required.
	Hub *hub.Hub
	// Logger receives the server's logs. Nil means slog.Default().
	Logger *slog.Logger

	// MaxBody bounds a request body, in bytes. Zero means twice the hub's
	// MaxMessage plus 1 KiB, so pretty-printed JSON whose compact form fits
	// is still read; the hub judges the compact size.
	MaxBody int64
	// MaxConnections bounds the connections served at once; one more is
	// answered 503 unavailable with Retry-After and closed (see
	// listener.go). Zero means 20000; negative, no bound.
	MaxConnections int
	// ReadHeaderTimeout bounds reading a request's headers (no slowloris)
	// and, with TLS, the TLS handshake before them. Zero means 10s.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds reading a request body, from the end of its
	// headers to its last byte, including a body the handler leaves for
	// net/http to discard; past it the request is answered 408
	// request_timeout and its connection closed (see body.go). Zero means
	// 10s; negative, no bound.
	BodyTimeout time.Duration
	// BodyMinRate is the slowest a request body may arrive, in bytes per
	// second on average, once BodyGrace has passed: the body's read
	// deadline is its start + BodyGrace + bytes received / BodyMinRate,
	// never later than BodyTimeout allows. Zero means 1024; negative, no
	// rate (BodyTimeout alone bounds a body).
	BodyMinRate int64
	// BodyGrace is how long a body has before BodyMinRate applies. Zero
	// means 2s.
	BodyGrace time.Duration
	// IdleTimeout bounds an idle keep-alive connection. Zero means 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers. Zero means 64 KiB.
	MaxHeaderBytes int

	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may open WebSockets and read responses cross-origin. "*" allows any.
	// Empty allows the hub's own origin and any localhost origin.
	AllowedOrigins []string

	// WriteTimeout bounds one write on a streaming connection; a peer that
	// does not take a frame within it is cut. Zero means 10s.
	WriteTimeout time.Duration
	// Heartbeat is the SSE and NDJSON keep-alive interval. Zero means 15s.
	Heartbeat time.Duration
	// PingInterval is the WebSocket ping interval; a peer silent for two
	// intervals is closed. Zero means 25s.
	PingInterval time.Duration
	// PollTimeout is the default long-poll wait, PollMaxTimeout the most a
	// client may ask. Zero means 25s and 60s.
	PollTimeout    time.Duration
	PollMaxTimeout time.Duration
	// PresencePollLinger is how long a long-poll reader stays a member
	// of a presence channel after its poll ends: one that polls again
	// (with the same client=) within it is one member throughout, not a
	// join and a leave per poll. Zero means 10s.
	PresencePollLinger time.Duration
	// PublishRate bounds publishes per second on one WebSocket connection.
	// Zero means 1000; negative, no bound.
	PublishRate float64
	// MaxWebSockets bounds the WebSocket connections (/v1/ws and /v1/echo)
	// open at once; further upgrades get 503 unavailable. Zero means 90% of
	// MaxConnections, so WebSockets never take every connection slot from
	// request/response traffic; negative, no bound.
	MaxWebSockets int
	// WriteDelay is the longest the hub holds a message on a WebSocket,
	// SSE or NDJSON connection for batching (write_budget.go): the longest
	// window of the write budget. Messages are held only while the hub is
	// over WriteBudget, and only on connections already written to in the
	// current window; WebSocket replies and close frames are never held.
	// Zero means 30ms; negative holds nothing.
	WriteDelay time.Duration
	// WriteBudget is the hub-wide rate of writes (writes per second, over
	// every WebSocket, SSE and NDJSON connection) past which the hub
	// batches: each connection is then written about once per window of
	// up to WriteDelay, and what arrives meanwhile shares that write.
	// Below it every message is written as soon as its socket takes it.
	// Zero means 50000; negative, no budget (nothing is held).
	WriteBudget float64
	// NoWSCompression turns permessage-deflate off: WebSocket handshakes
	// that offer it are answered without it. False (the zero value)
	// negotiates it (ws_deflate.go).
	NoWSCompression bool
	// WSCompressionMin is the smallest publication (its JSON envelope, in
	// bytes) sent compressed; smaller ones go plain, where the few bytes
	// saved cost more CPU than they spare (docs/benchmarks.md,
	// "Compression"). Zero means 256; negative compresses every size.
	WSCompressionMin int
	// SSERetry is the reconnect delay SSE clients are told. Zero means 1s.
	SSERetry time.Duration

	// JWTSecret, when set, makes every /v1/ endpoint but /v1/echo require
	// an HS256 token signed with it (see Claims). Empty means open.
	JWTSecret []byte

	// TLS, when set, makes Serve speak HTTPS and WSS on its listener, with
	// HTTP/2 offered by ALPN (see tls.go); it needs a certificate
	// (Certificates or GetCertificate: [KeyPair.GetCertificate] reloads
	// one). Nil serves plain HTTP.
	TLS *tls.Config

	// Web serves / and top-level files (/duplex.js, /duplex.d.ts, …; see
	// webPath). Nil serves 404 there.
	Web http.Handler

	// Collectors are registered on /metrics beside the hub's series: the
	// engine's own (redismetrics.Collectors for a Redis engine), given by
	// whoever built the engine, so that neither the hub nor the server
	// knows Redis. Nil adds none.
	Collectors []prometheus.Collector
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 2*int64(c.Hub.Config().MaxMessage) + 1024
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 20000
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = 10 * time.Second
	}
	if c.BodyMinRate == 0 {
		c.BodyMinRate = 1024
	}
	if c.BodyGrace <= 0 {
		c.BodyGrace = 2 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.WSCompressionMin == 0 {
		c.WSCompressionMin = 256
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.WriteDelay == 0 {
		c.WriteDelay = 30 * time.Millisecond
	}
	if c.WriteBudget == 0 {
		c.WriteBudget = 50000
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = 25 * time.Second
	}
	if c.PresencePollLinger <= 0 {
		c.PresencePollLinger = 10 * time.Second
	}
	if c.PollMaxTimeout <= 0 {
		c.PollMaxTimeout = 60 * time.Second
	}
	if c.PublishRate == 0 {
		c.PublishRate = 1000
	}
	if c.SSERetry <= 0 {
		c.SSERetry = time.Second
	}
	return c
}

// Server serves one hub over HTTP. It is safe for concurrent use.
type Server struct {
	cfg  Config
	hub  *hub.Hub
	log  *slog.Logger
	mux  *http.ServeMux
	http *http.Server

	mu     sync.Mutex // guards closed
	closed bool
	// streams counts streaming handlers (ws, sse, stream, poll) running,
	// so Shutdown can wait for them after the hub closed their sessions.
	streams sync.WaitGroup
	ws      wsState // WebSocket connection count; see ws.go
	// budget paces writes to WebSocket, SSE and NDJSON connections
	// (write_budget.go); nil when Config.WriteDelay or WriteBudget is
	// negative.
	budget *writeBudget
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Hub == nil {
		return nil, errors.New("server: Config.Hub is nil")
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, hub: cfg.Hub, log: cfg.Logger, mux: http.NewServeMux()}
	s.budget = newWriteBudget(cfg.WriteBudget, cfg.WriteDelay)
	s.ws.compress = s.ws.deflate
	s.routes()
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return s, nil
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("POST /v1/channels/{channel}/messages", s.handlePublish)
	m.HandleFunc("GET /v1/channels/{channel}/messages", s.handleHistory)
	m.HandleFunc("/v1/channels/{channel}/messages", methodNotAllowed("GET, HEAD, POST"))
	m.HandleFunc("GET /v1/channels/{channel}/presence", s.handlePresence)
	m.HandleFunc("/v1/channels/{channel}/presence", methodNotAllowed("GET, HEAD"))
	m.HandleFunc("GET /v1/channels/{channel}", s.handleInfo)
	m.HandleFunc("/v1/channels/{channel}", methodNotAllowed("GET, HEAD"))
	m.HandleFunc("GET /v1/echo", s.handleEcho)
	m.HandleFunc("/v1/echo", methodNotAllowed("GET, HEAD"))
	m.HandleFunc("GET /v1/ws", s.handleWS)
	m.HandleFunc("/v1/ws", methodNotAllowed("GET"))
	m.HandleFunc("GET /v1/sse", s.handleSSE)
	m.HandleFunc("/v1/sse", methodNotAllowed("GET, HEAD"))
	m.HandleFunc("GET /v1/stream", s.handleStream)
	m.HandleFunc("/v1/stream", methodNotAllowed("GET, HEAD"))
	m.HandleFunc("GET /v1/poll", s.handlePoll)
	m.HandleFunc("/v1/poll", methodNotAllowed("GET, HEAD"))
	m.HandleFunc("GET /healthz", s.handleHealth)
	m.Handle("GET /metrics", s.metricsHandler())
	m.HandleFunc("/", s.handleRoot)
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, msg.Errorf(msg.CodeMethodNotAllow, "method %s is not allowed here; allowed: %s", r.Method, allow))
	}
}

// handleRoot serves the web client at / and at top-level file names
// (/duplex.js, /duplex.d.ts, /duplex-worker.js, the demo page's files:
// Web decides which exist), and JSON 404s everywhere else.
func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Web != nil && webPath(r.URL.Path) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed("GET, HEAD")(w, r)
			return
		}
		s.cfg.Web.ServeHTTP(w, r)
		return
	}
	writeError(w, msg.Errorf(msg.CodeNotFound, "no such endpoint: %s", r.URL.Path))
}

// webPath reports whether p is one Config.Web may serve: / or a file name
// at the top level (a dot in it, no further slash), so the web package can
// add a file without the server knowing its name.
func webPath(p string) bool {
	return p == "/" || (strings.LastIndexByte(p, '/') == 0 && strings.Contains(p, "."))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r = s.boundBody(w, r); r == nil {
		return
	}
	if s.cors(w, r) {
		return
	}
	if r = s.authenticate(w, r); r == nil {
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Handler returns the server's HTTP handler, for tests that bring their own
// http.Server.
func (s *Server) Handler() http.Handler { return s }

// Serve serves ln until Shutdown. It returns http.ErrServerClosed after a
// Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.MaxConnections > 0 {
		cl := newCapListener(ln, s.cfg.MaxConnections)
		if s.cfg.TLS != nil {
			cl.tls = refusalTLS(s.cfg.TLS)
		}
		ln = cl
	}
	if s.cfg.TLS != nil {
		return s.serveTLS(ln)
	}
	return s.http.Serve(ln)
}

// Shutdown stops accepting, closes every streaming session with a shutdown
// notice (WebSocket 1001, the end of an SSE or NDJSON stream, an empty
// long-poll answer), and waits for handlers to finish or ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	errc := make(chan error, 2)
	go func() { errc <- s.http.Shutdown(ctx) }()
	go func() { errc <- s.hub.Shutdown(ctx) }()
	err1, err2 := <-errc, <-errc
	// Hijacked connections (WebSocket) are not tracked by http.Server.
	done := make(chan struct{})
	go func() { s.streams.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.http.Close()
		return ctx.Err()
	}
	return errors.Join(err1, err2)
}

// beginStream registers a streaming handler; it returns false once Shutdown
// has begun. Call the returned func when the handler ends.
func (s *Server) beginStream() (end func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	s.streams.Add(1)
	return s.streams.Done, true
}
