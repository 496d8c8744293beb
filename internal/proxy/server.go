package proxy

// Lock order: Server.mu and udpAssoc.mu are never held
// together; each guards its own fields only.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// ErrServerClosed is returned by [Server.Serve] after [Server.Shutdown].
var ErrServerClosed = errors.New("proxy: server closed")

// Server is a running proxy. Its methods may be called from any goroutine.
// Serve may be called more than once (one listener each); call Shutdown to
// stop all of them and wait for every connection to end.
type Server struct {
	cfg     Config
	acl     acl
	rr      atomic.Uint64   // upstream round-robin counter
	health  *upstreamHealth // nil without Config.UpstreamHealth
	metrics metrics

	wg sync.WaitGroup // every connection and UDP goroutine

	// ctx bounds dials; cancelled when Shutdown gives up waiting.
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex // guards the fields below
	// listeners being served; closed on Shutdown.
	listeners map[net.Listener]struct{}
	// conns are the open client connections and their state, refused
	// ones included.
	conns map[*conn]struct{}
	// admitted counts the conns not refused: what MaxConns caps.
	admitted int
	// refusing counts the refused conns being answered (maxRefusing).
	refusing int
	// perClient counts admitted connections per client address.
	perClient map[netip.Addr]int
	closing   bool
	ready     chan struct{} // closed when the first listener is served
	addr      net.Addr
}

// New checks cfg and returns a Server that is not yet serving.
func New(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("proxy config: %w", err)
	}
	s := &Server{
		cfg:       c,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		perClient: map[netip.Addr]int{},
		ready:     make(chan struct{}),
	}
	s.metrics.init()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.health = startUpstreamHealth(s)
	s.acl.allowAll = c.AllowPrivate
	for _, p := range c.Allow {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		s.acl.allow = append(s.acl.allow, p.Masked())
	}
	return s, nil
}

// Addr returns the address of the first listener served, or nil before
// Serve was called. [Server.Ready] tells when it is set.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Ready is closed once a listener is being served.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// ListenAndServe listens on addr (TCP) and serves until ctx is cancelled,
// then shuts down, giving open tunnels up to grace to finish.
func (s *Server) ListenAndServe(ctx context.Context, addr string, grace time.Duration) error {
	ln, err := s.Listen(ctx, addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	err = s.Shutdown(sctx)
	<-errc
	return err
}

// Listen opens a TCP listener for [Server.Serve] whose accepted
// connections get no TCP keep-alive when IdleTimeout is on: a tunnel that
// goes silent is closed by the idle timeout anyway, and the four
// setsockopt calls keep-alive costs on every accepted (and dialled)
// connection were a tenth of the system calls of a tunnel setup.
func (s *Server) Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: s.keepAlive()}
	return lc.Listen(ctx, "tcp", addr)
}

// keepAlive is the TCP keep-alive period for the proxy's connections:
// off (-1) when the idle timeout bounds silent tunnels, Go's default (0)
// when tunnels may stay silent forever.
func (s *Server) keepAlive() time.Duration {
	if s.cfg.IdleTimeout > 0 {
		return -1
	}
	return 0
}

// Serve accepts connections on ln until Shutdown, and returns
// ErrServerClosed then. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	if s.addr == nil {
		s.addr = ln.Addr()
		close(s.ready)
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			if !errors.Is(err, net.ErrClosed) {
				// EMFILE and friends: wait for connections to end.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.cfg.Logger.Warn("proxy accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		s.metrics.accepted.Add(1)
		c := s.track(nc)
		if c == nil {
			nc.Close()
			continue
		}
		s.wg.Go(func() { s.serveConn(c) })
	}
}

// track registers a new client connection, or returns nil if shutdown
// (or a flood of refused connections) refuses it. A connection over a cap
// is tracked with its refusal set: it is served up to its request and
// answered with the reason, but holds no slot of the caps.
func (s *Server) track(nc net.Conn) *conn {
	ip := remoteIP(nc)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	c := &conn{nc: nc, ip: ip}
	switch {
	case s.cfg.MaxConns > 0 && s.admitted >= s.cfg.MaxConns:
		c.refusal = refuseMaxConns
	case s.cfg.MaxConnsPerClient > 0 && s.perClient[ip] >= s.cfg.MaxConnsPerClient:
		c.refusal = refuseMaxConnsPerClient
	}
	if c.refusal != refuseNone {
		s.metrics.refused[c.refusal].Add(1)
		if s.refusing >= maxRefusing {
			return nil
		}
		s.refusing++
	} else {
		s.admitted++
		s.perClient[ip]++
		s.metrics.open.Add(1)
	}
	c.state.Store(stateHandshake)
	s.conns[c] = struct{}{}
	return c
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.refusal != refuseNone {
		s.refusing--
		s.mu.Unlock()
		return
	}
	s.admitted--
	if s.perClient[c.ip]--; s.perClient[c.ip] <= 0 {
		delete(s.perClient, c.ip)
	}
	s.mu.Unlock()
	s.metrics.open.Add(-1)
}

func remoteIP(nc net.Conn) netip.Addr {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	ap, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
	return ap.Addr().Unmap()
}

// Shutdown stops accepting, closes connections that are between requests
// or still in their handshake, and waits for tunnels to end. When ctx ends
// first, it closes everything, waits, and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.health.stop()
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		if st := c.state.Load(); st == stateHandshake || st == stateIdle {
			c.nc.Close()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// shuttingDown reports whether Shutdown was called.
func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// conn states, for Shutdown.
const (
	stateHandshake int32 = iota // reading a greeting or request
	stateIdle                   // HTTP keep-alive, between requests
	stateActive                 // dialling, tunnelling, forwarding
)

// conn is one client connection.
type conn struct {
	nc    net.Conn
	ip    netip.Addr
	state atomic.Int32
	// refusal is set on accept when a cap turned the connection away; it
	// is answered with the reason instead of being served.
	refusal refusal
	// handedOff is set, by the goroutine serving the handshake, when
	// another goroutine took the connection over and will close and
	// untrack it.
	handedOff bool
}

// serveConn reads the first byte and hands the connection, and the reader
// holding that byte and what came with it, to the protocol it names; the
// protocol's serve function returns the reader to the pool.
func (s *Server) serveConn(c *conn) {
	defer func() {
		if !c.handedOff {
			c.nc.Close()
			s.untrack(c)
		}
	}()
	nc := c.nc
	hs := s.cfg.HandshakeTimeout
	if c.refusal != refuseNone {
		hs = min(hs, refusalHandshakeTimeout)
	}
	nc.SetDeadline(time.Now().Add(hs))
	// One buffered read takes the first byte and, usually, the whole
	// request with it; the protocol's reader goes on from that buffer.
	br := getReader(nc)
	first, err := br.Peek(1)
	if err != nil {
		putReader(br)
		s.logHandshakeFailure(c, "unknown", err)
		return
	}
	switch first[0] {
	case 4:
		br.Discard(1)
		s.serveSOCKS4(c, br)
	case 5:
		br.Discard(1)
		s.serveSOCKS5(c, br)
	default:
		s.serveHTTP(c, br)
	}
}

// tunnelLog is the access-log record of one tunnel or forwarded request.
type tunnelLog struct {
	proto    string // http, connect, websocket, socks4, socks5, socks5-udp
	client   net.Addr
	user     string
	target   string // as the client named it
	addr     string // the address dialled
	up, down int64
	status   int // HTTP status from the origin, forward path only
	start    time.Time
	outcome  outcome
	err      error
	// bytesCounted means the metrics already have up and down (the pump
	// counts as bytes move).
	bytesCounted bool
}

// logTunnel writes the access-log line of l and counts it.
func (s *Server) logTunnel(l *tunnelLog) {
	s.metrics.record(l)
	if s.cfg.AccessLog != nil {
		s.writeAccessLine(l)
		return
	}
	if !s.cfg.Logger.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	attrs := []slog.Attr{
		slog.String("proto", l.proto),
		slog.String("client", addrString(l.client)),
		slog.String("target", l.target),
	}
	if l.addr != "" {
		attrs = append(attrs, slog.String("addr", l.addr))
	}
	if l.user != "" {
		attrs = append(attrs, slog.String("user", l.user))
	}
	if l.status != 0 {
		attrs = append(attrs, slog.Int("status", l.status))
	}
	attrs = append(attrs,
		slog.Int64("bytes_up", l.up),
		slog.Int64("bytes_down", l.down),
		slog.Float64("duration_ms", float64(time.Since(l.start).Microseconds())/1000),
		slog.String("outcome", l.outcome.String()),
	)
	if l.err != nil {
		attrs = append(attrs, slog.String("err", l.err.Error()))
	}
	s.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, "proxy", attrs...)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// logHandshakeFailure logs a connection that never named a target.
func (s *Server) logHandshakeFailure(c *conn, proto string, err error) {
	outcome := outcomeBadRequest
	if isTimeout(err) {
		outcome = outcomeHandshakeTimeout
	} else if errors.Is(err, net.ErrClosed) || isEOF(err) {
		outcome = outcomeClientClosed
	}
	s.logTunnel(&tunnelLog{proto: proto, client: c.nc.RemoteAddr(), start: time.Now(), outcome: outcome, err: err})
}

// tunnelOutcome names how a finished tunnel ended.
func tunnelOutcome(err error) outcome {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, errIdle):
		return outcomeIdleTimeout
	case errors.Is(err, errStalled):
		return outcomeStalled
	default:
		return outcomeClosed
	}
}
