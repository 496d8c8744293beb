// Package hubtest starts real duplex hubs for tests: an engine (memory
// unless the test gives another, or EngineEnv asks for Redis), the hub and the
// HTTP server on 127.0.0.1:0, over real sockets, stopped when the test
// ends. It also checks tests for goroutine leaks.
package hubtest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/engine/redis"
	"github.com/duplexhq/duplex/internal/engine/redis/redismetrics"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/web"
)

// Hub is a running hub.
type Hub struct {
	URL    string // http://127.0.0.1:port (https:// with Server.TLS)
	Addr   string // 127.0.0.1:port
	Hub    *hub.Hub
	Engine hub.Engine // Options.Engine, else memory or Redis (see EngineEnv)
	Server *server.Server

	stopped chan struct{}
	serr    error
}

// Options adjust the hub a test starts. Zero values keep the defaults.
type Options struct {
	Hub hub.Config // Engine is filled in
	// Memory are the memory engine's settings, when Engine is nil; on
	// Redis (EngineEnv) HistorySize and HistoryTTL apply there.
	Memory memory.Config
	// Engine, if set, is the hub's engine instead of a memory engine, not
	// yet started (the hub starts it and closes it at shutdown).
	Engine hub.Engine
	Server server.Config // Hub is filled in
	// Listener, if set, is served instead of a new 127.0.0.1:0 listener
	// (to restart a hub on the same port).
	Listener net.Listener
}

// Start starts a hub and stops it when t ends.
func Start(t testing.TB, opts *Options) *Hub {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	h, err := StartE(opts)
	if err != nil {
		t.Fatalf("hubtest: %v", err)
	}
	t.Cleanup(func() { h.Stop(t) })
	return h
}

// StartE starts a hub; the caller stops it with Stop.
func StartE(opts *Options) (*Hub, error) {
	eng := opts.Engine
	if eng == nil {
		var err error
		if eng, err = defaultEngine(opts); err != nil {
			return nil, err
		}
	}
	hcfg := opts.Hub
	hcfg.Engine = eng
	hb, err := hub.New(context.Background(), hcfg)
	if err != nil {
		return nil, err
	}
	scfg := opts.Server
	scfg.Hub = hb
	if r, ok := eng.(*redis.Engine); ok && scfg.Collectors == nil {
		scfg.Collectors = redismetrics.Collectors(r.Stats()) // as duplex serve does
	}
	if scfg.Web == nil {
		scfg.Web = web.Handler()
	}
	srv, err := server.New(scfg)
	if err != nil {
		return nil, err
	}
	ln := opts.Listener
	if ln == nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
	}
	scheme := "http://"
	if scfg.TLS != nil {
		scheme = "https://"
	}
	h := &Hub{
		URL: scheme + ln.Addr().String(), Addr: ln.Addr().String(),
		Hub: hb, Engine: eng, Server: srv, stopped: make(chan struct{}),
	}
	go func() {
		h.serr = srv.Serve(ln)
		close(h.stopped)
	}()
	return h, nil
}

// Stop shuts the hub down (idempotent) and fails t if that goes wrong.
func (h *Hub) Stop(t testing.TB) {
	t.Helper()
	select {
	case <-h.stopped:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Server.Shutdown(ctx); err != nil {
		t.Errorf("hubtest: shutdown: %v", err)
	}
	<-h.stopped
	if h.serr != nil && !errors.Is(h.serr, http.ErrServerClosed) {
		t.Errorf("hubtest: serve: %v", h.serr)
	}
}

// ServeHandler serves h on a new 127.0.0.1:0 listener until t ends, and
// returns its http:// URL: a front for a hub (one that refuses upgrades,
// counts them, cuts connections). Unlike httptest.Server.Close, which waits
// for every handler, the cleanup gives handlers 5s and then closes their
// connections, since a front may be proxying an endless stream.
func ServeHandler(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}
