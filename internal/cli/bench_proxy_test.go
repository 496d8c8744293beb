package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
	"github.com/duplexhq/duplex/internal/proxy"
)

// bufferingProxy is a tiny forward HTTP proxy that does what a buffering
// reverse proxy (nginx's proxy_buffering, say) does to a stream: it passes
// a response on only in blocks of blockSize bytes (and the rest at its
// end). It refuses CONNECT, as many corporate proxies do for WebSocket.
type bufferingProxy struct {
	blockSize int
	upstream  *http.Transport
}

func (p *bufferingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		http.Error(w, "no tunnels here", http.StatusMethodNotAllowed)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Connection")
	resp, err := p.upstream.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	buf := make([]byte, p.blockSize)
	for {
		n, err := io.ReadFull(resp.Body, buf)
		if n > 0 {
			w.Write(buf[:n])
			http.NewResponseController(w).Flush()
		}
		if err != nil {
			return
		}
	}
}

func serveOn(t *testing.T, serve func(net.Listener) error) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- serve(ln) }()
	t.Cleanup(func() {
		ln.Close()
		<-errc
	})
	return "http://" + ln.Addr().String()
}

// runProxiedSuite runs the quick suite through proxyURL and returns the
// proxy verdict of each transport.
func runProxiedSuite(t *testing.T, proxyURL string) map[string]bench.ProxyVerdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	code, stdout, stderr := benchMain(t, ctx, "bench", "--quick", "--json", "--proxy", proxyURL)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var r bench.SuiteReport
	if err := json.NewDecoder(bytes.NewReader([]byte(stdout))).Decode(&r); err != nil {
		t.Fatal(err)
	}
	got := map[string]bench.ProxyVerdict{}
	for _, v := range r.Proxy {
		got[v.Transport] = v
	}
	if len(got) != len(bench.SuiteTransports) {
		t.Fatalf("proxy verdicts for %d transports: %+v", len(got), r.Proxy)
	}
	return got
}

// TestBenchSuiteThroughBufferingProxy puts the buffering proxy in the
// path: WebSocket is broken (CONNECT refused), SSE and NDJSON arrive
// late and in bursts (buffered), long polling and plain polling, whose
// responses are whole, are fine.
func TestBenchSuiteThroughBufferingProxy(t *testing.T) {
	t.Parallel() // mostly waiting on what the proxy holds back
	p := &bufferingProxy{blockSize: 16 << 10, upstream: &http.Transport{}}
	defer p.upstream.CloseIdleConnections()
	srv := &http.Server{Handler: p}
	u := serveOn(t, func(ln net.Listener) error {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	})
	t.Cleanup(func() { srv.Close() })
	got := runProxiedSuite(t, u)
	want := map[string]string{"ws": "broken", "sse": "buffered", "stream": "buffered", "poll": "ok", "history": "ok"}
	for tr, verdict := range want {
		if got[tr].Verdict != verdict {
			t.Errorf("%s through a buffering proxy: %q (%s), want %q", tr, got[tr].Verdict, got[tr].Detail, verdict)
		}
	}
}

// TestBenchSuiteThroughDuplexProxy puts `duplex proxy` (internal/proxy,
// which relays bytes as they come) in the path: every transport is ok.
func TestBenchSuiteThroughDuplexProxy(t *testing.T) {
	t.Parallel()
	ps, err := proxy.New(proxy.Config{AllowPrivate: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	u := serveOn(t, func(ln net.Listener) error {
		err := ps.Serve(ln)
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ps.Shutdown(ctx)
	})
	for tr, v := range runProxiedSuite(t, u) {
		if v.Verdict != "ok" {
			t.Errorf("%s through duplex proxy: %q (%s), want ok", tr, v.Verdict, v.Detail)
		}
	}
}
