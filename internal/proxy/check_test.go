package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/proxy/check"
	"github.com/duplexhq/duplex/internal/proxy/check/judge"
)

// startJudge starts the in-process judge duplex proxy check uses: a real
// hub plus a UDP echo, on 127.0.0.1.
func startJudge(t *testing.T, cfg judge.Config) *judge.Judge {
	t.Helper()
	j, err := judge.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := j.Close(ctx); err != nil {
			t.Errorf("judge: %v", err)
		}
	})
	return j
}

// forwardOnly serves h as an HTTP forward proxy on 127.0.0.1:0 (no
// CONNECT, no SOCKS: those requests get 405 or 400).
func forwardOnly(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect || !r.URL.IsAbs() {
			http.Error(w, "forwarding only", http.StatusMethodNotAllowed)
			return
		}
		h.ServeHTTP(w, r)
	})}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		srv.Close() // streams it relays never end by themselves
		<-done
	})
	return ln.Addr().String()
}

// bufferingProxy forwards each request and holds the whole response until
// it has ended, as some corporate proxies and antivirus filters do.
func bufferingProxy(t *testing.T) string {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return forwardOnly(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		out.RequestURI = ""
		for _, h := range []string{"Connection", "Upgrade", "Proxy-Connection", "Keep-Alive"} {
			out.Header.Del(h)
		}
		resp, err := tr.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	}))
}

// lateBufferingProxy passes a response's head and first read on at once
// and then holds the rest in net/http's 4 KiB write buffer: a stream opens,
// but what comes later arrives in lumps.
func lateBufferingProxy(t *testing.T) string {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return forwardOnly(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.Header.Del("Connection")
		out.Header.Del("Upgrade")
		resp, err := tr.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		n, _ := resp.Body.Read(buf)
		w.Write(buf[:n])
		http.NewResponseController(w).Flush()
		io.Copy(w, resp.Body) // no more flushes
	}))
}

// upgradeDroppingProxy streams responses as they come but strips Upgrade,
// as tinyproxy does: plain ws:// through it cannot work.
func upgradeDroppingProxy(t *testing.T) string {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return forwardOnly(t, &httputil.ReverseProxy{
		Transport:     tr,
		FlushInterval: -1,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = pr.In.URL
			pr.Out.Header.Del("Upgrade")
		},
	})
}

// downProxy is an address nothing listens on.
func downProxy(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// want is what a check must find: protocols that work (the others must
// not) and each transport's status (in at least one protocol for "ok",
// in none better for the others).
type want struct {
	works      []string
	transports map[string]string
	anonymity  string
}

func assertCheck(t *testing.T, name string, r check.Result, w want) {
	t.Helper()
	for _, pr := range r.Protocols {
		should := false
		for _, p := range w.works {
			should = should || p == pr.Protocol
		}
		if pr.OK != should {
			t.Errorf("%s: %s ok=%v (%s), want %v", name, pr.Protocol, pr.OK, pr.Error, should)
		}
		if pr.OK && (pr.ConnectMS <= 0 || pr.TTFBMS <= 0) {
			t.Errorf("%s: %s connect %vms, ttfb %vms: want both measured", name, pr.Protocol, pr.ConnectMS, pr.TTFBMS)
		}
	}
	for tr, st := range w.transports {
		got := "-"
		for _, pr := range r.Protocols {
			for _, x := range pr.Transports {
				if x.Transport == tr && (got == "-" || x.Status == check.StatusOK) {
					got = x.Status
				}
			}
		}
		if got != st {
			t.Errorf("%s: transport %s %s, want %s\n%+v", name, tr, got, st, r.Protocols)
		}
	}
	if r.Anonymity != w.anonymity {
		t.Errorf("%s: anonymity %q, want %q", name, r.Anonymity, w.anonymity)
	}
}

var allOK = map[string]string{"http": "ok", "ws": "ok", "sse": "ok", "stream": "ok", "poll": "ok", "hold": "ok", "udp": "ok"}

// TestCheckProxies classifies proxies the test starts, each as it really
// behaves, all checked at once so the suite pays one poll's wait.
func TestCheckProxies(t *testing.T) {
	checkLeaks(t)
	// Heartbeats every 2s keep held streams talking, and let a duplex
	// proxy notice at once that the checker left a forwarded stream (it
	// only sees that when it next writes to it). The idle case uses the
	// hub's default 15s, so its held stream is silent.
	j := startJudge(t, judge.Config{Heartbeat: 2 * time.Second})
	quiet := startJudge(t, judge.Config{})
	dup := func(cfg Config) string {
		cfg.Allow = loopback
		cfg.LookupNetIP = newResolver("localhost", "127.0.0.1").lookup
		cfg.Logger = discardLogger()
		return startProxy(t, cfg).addr
	}
	auth := []Credential{{"u", "p@ss"}}
	cases := []struct {
		name, proxy string
		poll        time.Duration
		want        want
	}{
		{"elite", dup(Config{}), 2 * time.Second,
			want{check.Protocols, allOK, check.Elite}},
		{"anonymous", dup(Config{Anonymity: Anonymous}), 2 * time.Second,
			want{check.Protocols, allOK, check.Anonymous}},
		{"transparent", dup(Config{Anonymity: Transparent}), 2 * time.Second,
			want{check.Protocols, allOK, check.Transparent}},
		// SOCKS4 carries no password, so auth refuses it.
		{"auth", "u:p%40ss@" + dup(Config{Credentials: auth}), 2 * time.Second,
			want{[]string{"http", "connect", "socks5", "socks5h", "socks5-udp"}, allOK, check.Elite}},
		{"auth without credentials", dup(Config{Credentials: auth}), 2 * time.Second,
			want{nil, map[string]string{"http": "-", "ws": "-"}, ""}},
		{"buffering", bufferingProxy(t), 2 * time.Second,
			want{[]string{"http"}, map[string]string{"http": "ok", "ws": "failed", "sse": "buffered", "stream": "buffered", "poll": "ok", "hold": "failed"}, check.Elite}},
		{"buffers after the first read", lateBufferingProxy(t), 2 * time.Second,
			want{[]string{"http"}, map[string]string{"http": "ok", "ws": "failed", "sse": "buffered", "stream": "buffered", "poll": "ok"}, check.Elite}},
		{"drops Upgrade", upgradeDroppingProxy(t), 2 * time.Second,
			want{[]string{"http"}, map[string]string{"http": "ok", "ws": "failed", "sse": "ok", "stream": "ok", "poll": "ok", "hold": "ok"}, check.Elite}},
		// Idle for 5s: an 8s long poll and an 8s silent stream are cut;
		// the rest works.
		{"idle timeout 5s", dup(Config{IdleTimeout: 5 * time.Second}), 8 * time.Second,
			want{check.Protocols, map[string]string{"http": "ok", "ws": "ok", "sse": "ok", "stream": "ok", "poll": "cut", "hold": "cut", "udp": "ok"}, check.Elite}},
		{"down", downProxy(t), 2 * time.Second,
			want{nil, map[string]string{"http": "-"}, ""}},
	}
	results := make([]check.Result, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		tg, err := check.ParseTarget(c.proxy)
		if err != nil {
			t.Fatal(err)
		}
		jj := j
		if c.poll > 2*time.Second {
			jj = quiet
		}
		cfg := check.Config{Judge: jj.URL, UDPEcho: jj.UDPEcho, Timeout: 3 * time.Second, Poll: c.poll, Deliver: time.Second}
		wg.Go(func() { results[i] = check.Check(context.Background(), cfg, tg) })
	}
	wg.Wait()
	for i, c := range cases {
		assertCheck(t, c.name, results[i], c.want)
	}
	for i, c := range cases {
		if c.name != "buffers after the first read" {
			continue
		}
		for _, x := range results[i].Protocols[0].Transports {
			if (x.Transport == "sse" || x.Transport == "stream") && !strings.Contains(x.Detail, "published after the stream opened") {
				t.Errorf("%s: %s %s (%s), want a message that came late", c.name, x.Transport, x.Status, x.Detail)
			}
		}
	}
	if v := results[len(cases)-1].Verdict; !strings.Contains(v, "carries nothing") || !strings.Contains(v, "refused") {
		t.Errorf("down proxy verdict %q", v)
	}
	if v := results[0].Verdict; v != "carries request/response, long polling, streaming, held streams, full duplex, datagrams" {
		t.Errorf("elite verdict %q", v)
	}
}
