package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func mustURLs(ss ...string) []*url.URL {
	var us []*url.URL
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			panic(err)
		}
		us = append(us, u)
	}
	return us
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestUpstreamChaining(t *testing.T) {
	checkLeaks(t)
	origin := newOrigin(t)
	httpUp := startProxy(t, Config{Allow: loopback, Credentials: []Credential{{"hu", "hp"}}})
	socksUp := startProxy(t, Config{Allow: loopback, Credentials: []Credential{{"su", "sp"}}})
	dead := deadAddr(t)
	p := startProxy(t, Config{Allow: loopback, Upstreams: mustURLs(
		"http://hu:hp@"+httpUp.addr,
		"socks5://"+dead, // skipped
		"socks5://su:sp@"+socksUp.addr,
	)})
	cl := proxyClient(t, p.addr)
	cl.Transport.(*http.Transport).DisableKeepAlives = true // one tunnel per request
	const n = 6
	for i := range n {
		resp, err := cl.Get(fmt.Sprintf("%s/chain%d", origin.URL, i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != fmt.Sprintf("hello /chain%d", i) {
			t.Fatalf("body %q", b)
		}
	}
	// Tunnels through SOCKS and CONNECT too.
	_, portS, _ := net.SplitHostPort(origin.Listener.Addr().String())
	var port uint16
	fmt.Sscan(portS, &port)
	for range 3 {
		c, rep := socks5Dial(t, p.addr, atypIPv4, "127.0.0.1", port)
		if rep != 0 {
			t.Fatalf("socks5 via upstream: %#x", rep)
		}
		io.WriteString(c, "GET /t HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(c)
		c.Close() // the origin's half-close left our half open
		if !strings.HasSuffix(string(b), "hello /t") {
			t.Fatalf("got %q", b)
		}
	}
	waitIdle(t, httpUp)
	waitIdle(t, socksUp)
	waitIdle(t, p)
	hu, su := httpUp.metrics.accepted.Load(), socksUp.metrics.accepted.Load()
	if hu == 0 || su == 0 || hu+su != n+3 {
		t.Errorf("http upstream took %d, socks upstream %d; want both used, %d in all", hu, su, n+3)
	}
	if p.metrics.upstreamFailures.Load() == 0 {
		t.Error("the dead upstream was never tried")
	}
	if !strings.Contains(p.log.String(), `"outcome":"ok"`) {
		t.Error(p.log.String())
	}
	// The upstream's ACL still applies, and so does ours.
	if code := httpForward(t, p.addr, "http://10.0.0.1/"); code != 403 {
		t.Errorf("private destination via upstream: %d", code)
	}
}

func TestUpstreamAllFail(t *testing.T) {
	checkLeaks(t)
	origin := newOrigin(t)
	p := startProxy(t, Config{Allow: loopback, Upstreams: mustURLs("http://"+deadAddr(t), "socks5://"+deadAddr(t))})
	if code := httpForward(t, p.addr, origin.URL+"/"); code != 502 {
		t.Errorf("got %d, want 502", code)
	}
	_, portS, _ := net.SplitHostPort(origin.Listener.Addr().String())
	var port uint16
	fmt.Sscan(portS, &port)
	if _, rep := socks5Dial(t, p.addr, atypIPv4, "127.0.0.1", port); rep != 0x01 {
		t.Errorf("socks5 reply %#x, want general failure", rep)
	}
}

// TestUpstreamReferenceProxies chains through proxies nobody here wrote:
// dante as a SOCKS5 upstream and tinyproxy as an HTTP (CONNECT) upstream.
func TestUpstreamReferenceProxies(t *testing.T) {
	checkLeaks(t)
	origin := newOrigin(t)
	dante := startDante(t)
	tiny := startTinyproxy(t)
	p := startProxy(t, Config{Allow: loopback, Upstreams: mustURLs("socks5://"+dante.addr, "http://"+tiny.addr)})
	cl := proxyClient(t, p.addr)
	cl.Transport.(*http.Transport).DisableKeepAlives = true
	for i := range 4 {
		resp, err := cl.Get(fmt.Sprintf("%s/ref%d", origin.URL, i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != fmt.Sprintf("hello /ref%d", i) {
			t.Fatalf("body %q", b)
		}
	}
	waitIdle(t, p)
	if f := p.metrics.upstreamFailures.Load(); f != 0 {
		t.Errorf("%d upstream failures:\n%s", f, p.log.String())
	}
}
