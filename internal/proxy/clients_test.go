package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"
)

func runCmd(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// TestCurl drives the proxy with curl through every proxy scheme curl has,
// with and without credentials.
func TestCurl(t *testing.T) {
	checkLeaks(t)
	origin := newOrigin(t)
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	open := startProxy(t, Config{Allow: loopback})
	authed := startProxy(t, Config{Allow: loopback, Credentials: []Credential{{"alice", "s3cret:pw"}}})
	byIP := "http://127.0.0.1:" + port + "/path"
	byName := "http://origin.test:" + port + "/path"

	cases := []struct {
		name    string
		proxy   string // scheme://[user:pass@]host:port, %s is the proxy address
		connect bool
		url     string
		authed  bool
		wantOK  bool
	}{
		{"http forward", "http://%s", false, byName, false, true},
		{"http CONNECT", "http://%s", true, byName, false, true},
		{"socks4", "socks4://%s", false, byIP, false, true},
		{"socks4a", "socks4a://%s", false, byName, false, true},
		{"socks5", "socks5://%s", false, byIP, false, true},
		{"socks5h", "socks5h://%s", false, byName, false, true},
		{"socks5 with unneeded credentials", "socks5://bob:x@%s", false, byIP, false, true},

		{"auth http forward", "http://alice:s3cret%%3Apw@%s", false, byName, true, true},
		{"auth http CONNECT", "http://alice:s3cret%%3Apw@%s", true, byName, true, true},
		{"auth socks5", "socks5://alice:s3cret%%3Apw@%s", false, byIP, true, true},
		{"auth socks5h", "socks5h://alice:s3cret%%3Apw@%s", false, byName, true, true},
		{"auth http forward, no credentials", "http://%s", false, byName, true, false},
		{"auth http CONNECT, wrong password", "http://alice:nope@%s", true, byName, true, false},
		{"auth socks5, wrong password", "socks5://alice:nope@%s", false, byIP, true, false},
		{"auth socks5h, no credentials", "socks5h://%s", false, byName, true, false},
		{"auth socks4 refused", "socks4://alice@%s", false, byIP, true, false},
		{"auth socks4a refused", "socks4a://alice@%s", false, byName, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := open.addr
			if tc.authed {
				addr = authed.addr
			}
			px := strings.Replace(tc.proxy, "%s", addr, 1)
			px = strings.ReplaceAll(px, "%%", "%")
			args := []string{"-sS", "--max-time", "20", "-w", "\n%{http_code}", "-x", px}
			if tc.connect {
				args = append(args, "-p")
			}
			args = append(args, tc.url)
			out, err := runCmd(t, "curl", args...)
			if tc.wantOK {
				if err != nil || !strings.Contains(out, "hello /path") || !strings.HasSuffix(out, "\n200") {
					t.Fatalf("curl %v: %v\n%s", args, err, out)
				}
				return
			}
			if err == nil && strings.HasSuffix(out, "\n200") {
				t.Fatalf("curl %v succeeded, want refusal:\n%s", args, out)
			}
			if strings.HasPrefix(tc.proxy, "http") && !strings.Contains(out, "407") {
				t.Fatalf("curl %v: want 407:\n%s", args, out)
			}
		})
	}
}

// TestGoSOCKS5Client uses golang.org/x/net/proxy, with and without
// credentials, by IP and by name.
func TestGoSOCKS5Client(t *testing.T) {
	checkLeaks(t)
	origin := newOrigin(t)
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	open := startProxy(t, Config{Allow: loopback})
	authed := startProxy(t, Config{Allow: loopback, Credentials: []Credential{{"u", "p"}}})
	for _, tc := range []struct {
		name string
		addr string
		auth *xproxy.Auth
		host string
		ok   bool
	}{
		{"no auth by IP", open.addr, nil, "127.0.0.1", true},
		{"no auth by name", open.addr, nil, "origin.test", true},
		{"auth", authed.addr, &xproxy.Auth{User: "u", Password: "p"}, "origin.test", true},
		{"bad auth", authed.addr, &xproxy.Auth{User: "u", Password: "q"}, "origin.test", false},
		{"no auth offered", authed.addr, nil, "origin.test", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := xproxy.SOCKS5("tcp", tc.addr, tc.auth, &net.Dialer{})
			if err != nil {
				t.Fatal(err)
			}
			tr := &http.Transport{DialContext: d.(xproxy.ContextDialer).DialContext}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			resp, err := cl.Get("http://" + net.JoinHostPort(tc.host, port) + "/go")
			if !tc.ok {
				if err == nil {
					resp.Body.Close()
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "hello /go" {
				t.Fatalf("body %q", b)
			}
		})
	}
}

// TestGoHTTPProxyClient uses net/http's own proxy support (forward and,
// for an https-looking tunnel, CONNECT is covered by curl -p).
func TestGoHTTPProxyClient(t *testing.T) {
	checkLeaks(t)
	origin := newOrigin(t)
	p := startProxy(t, Config{Allow: loopback})
	pu, _ := url.Parse("http://" + p.addr)
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := range 3 {
		resp, err := cl.Get(origin.URL + "/n" + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello /n"+strconv.Itoa(i) {
			t.Fatalf("body %q", b)
		}
	}
	// Keep-alive: three requests, one client connection.
	if n := p.metrics.accepted.Load(); n != 1 {
		t.Errorf("accepted %d client connections, want 1 (keep-alive)", n)
	}
}

// TestPySocks uses Python's PySocks for SOCKS4 and SOCKS4a (and SOCKS5).
func TestPySocks(t *testing.T) {
	checkLeaks(t)
	origin := newOrigin(t)
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	p := startProxy(t, Config{Allow: loopback})
	phost, pport, _ := net.SplitHostPort(p.addr)
	authed := startProxy(t, Config{Allow: loopback, Credentials: []Credential{{"u", "p"}}})
	_, aport, _ := net.SplitHostPort(authed.addr)
	for _, tc := range []struct {
		kind, host, pport string
		extra             []string
		ok                bool
	}{
		{"socks4", "127.0.0.1", pport, nil, true},
		{"socks4a", "origin.test", pport, nil, true},
		{"socks5", "127.0.0.1", pport, nil, true},
		{"socks5h", "origin.test", pport, nil, true},
		// Credentials for a proxy without --auth: PySocks offers both
		// methods and the proxy picks "none" (docs/proxy.md).
		{"socks5h", "origin.test", pport, []string{"u", "p"}, true},
		{"socks5h", "origin.test", aport, []string{"u", "p"}, true},
		{"socks5h", "origin.test", aport, []string{"u", "wrong"}, false},
		{"socks4", "127.0.0.1", aport, []string{"u"}, false},
		{"socks4a", "nosuch.test", pport, nil, false},
		{"socks4", "10.1.2.3", pport, nil, false},
	} {
		t.Run(tc.kind+"_"+tc.host+"_"+strings.Join(tc.extra, ":"), func(t *testing.T) {
			args := append([]string{"testdata/pysocks_get.py", tc.kind, phost, tc.pport, tc.host, port, "/py"}, tc.extra...)
			out, err := runCmd(t, "/usr/bin/python3", args...)
			if tc.ok {
				if err != nil || !strings.Contains(out, "200 OK") || !strings.Contains(out, "hello /py") {
					t.Fatalf("pysocks %v: %v\n%s", args, err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("pysocks %v succeeded, want a proxy error:\n%s", args, out)
			}
			if !strings.Contains(out, "proxy error") {
				t.Fatalf("pysocks %v: %v\n%s", args, err, out)
			}
		})
	}
}
