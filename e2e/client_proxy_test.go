package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/proxy"
	"github.com/duplexhq/duplex/internal/tlstest"
)

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// hubName is a host name only the proxy can resolve (to 127.0.0.1), so a
// request that reaches the hub by it went through the proxy.
const hubName = "hub.test"

// startDuplexProxy runs `duplex proxy` in-process on 127.0.0.1:0, allowed
// to reach 127.0.0.1, resolving hubName. With tlsCfg it serves TLS (an
// https:// proxy). It stops when the test ends.
func startDuplexProxy(t *testing.T, creds []proxy.Credential, tlsCfg *tls.Config) *countingListener {
	t.Helper()
	s, err := proxy.New(proxy.Config{
		Credentials: creds,
		Allow:       []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		LookupNetIP: func(ctx context.Context, host string) ([]netip.Addr, error) {
			if host == hubName {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			}
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	var served net.Listener = cl
	if tlsCfg != nil {
		served = tls.NewListener(cl, tlsCfg)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(served) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("proxy shutdown: %v", err)
		}
		if err := <-errc; !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("proxy serve: %v", err)
		}
	})
	return cl
}

// selfSigned returns a server TLS config for 127.0.0.1 (and hubName) and
// a client config that trusts it.
func selfSigned(t *testing.T) (server, clientCfg *tls.Config) {
	t.Helper()
	ca := tlstest.NewCA(t)
	leaf := ca.Issue(t, 1, hubName)
	return &tls.Config{Certificates: []tls.Certificate{leaf.Cert}}, &tls.Config{RootCAs: ca.Pool()}
}

// TestClientThroughDuplexProxy: every transport through every proxy scheme
// of `duplex proxy` — http (forwarding, and CONNECT for WebSocket), https
// (the same inside TLS to the proxy), socks4, socks4a, socks5, socks5h —
// with credentials where the scheme carries them: subscribe, publish,
// receive, history.
func TestClientThroughDuplexProxy(t *testing.T) {
	hubtest.CheckLeaks(t)
	creds := []proxy.Credential{{User: "alice", Password: "s3cret:/@"}}
	authed := startDuplexProxy(t, creds, nil)
	open := startDuplexProxy(t, nil, nil) // SOCKS4 carries no password
	srvTLS, cliTLS := selfSigned(t)
	authedTLS := startDuplexProxy(t, creds, srvTLS)
	// The hub starts after the proxies so that it stops before them: a
	// forwarded stream whose client left ends in the proxy only when the
	// origin writes or ends (see docs/client.md).
	h := hubtest.Start(t, nil)
	_, port, _ := net.SplitHostPort(h.Addr)
	userinfo := "alice:s3cret%3A%2F%40@"

	schemes := []struct {
		scheme string
		ln     *countingListener
		auth   bool
		local  bool // the client resolves names (so use an IP)
	}{
		{"http", authed, true, false},
		{"https", authedTLS, true, false},
		{"socks4", open, false, true},
		{"socks4a", open, false, false},
		{"socks5", authed, true, true},
		{"socks5h", authed, true, false},
	}
	for _, sc := range schemes {
		for _, tr := range append(explicitTransports, client.Auto) {
			t.Run(sc.scheme+"/"+string(tr), func(t *testing.T) {
				proxyURL := sc.scheme + "://"
				if sc.auth {
					proxyURL += userinfo
				}
				proxyURL += sc.ln.Addr().String()
				if sc.scheme == "https" {
					proxyURL = strings.Replace(proxyURL, "127.0.0.1", "localhost", 1)
				}
				hubURL := "http://" + hubName + ":" + port
				if sc.local {
					hubURL = h.URL
				}
				opts := fastOpts(tr)
				opts.Proxy = proxyURL
				opts.TLSConfig = cliTLS
				before := sc.ln.n.Load()
				c := dialClient(t, hubURL, opts)
				ch := "px-" + sc.scheme + "-" + string(tr)
				s := subscribe(t, c, []string{ch}, nil)
				if tr != client.Auto && s.Transport() != tr {
					t.Fatalf("transport %s", s.Transport())
				}
				if tr == client.Auto && s.Transport() != client.WebSocket {
					t.Fatalf("auto fell back to %s through %s", s.Transport(), sc.scheme)
				}
				publishN(t, c, ch, 1, 3)
				expectMessages(t, s, map[string][2]int{ch: {1, 3}})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				hist, err := c.History(ctx, ch, 0, 10)
				if err != nil || len(hist.Messages) != 3 {
					t.Fatalf("history: %v %+v", err, hist)
				}
				if sc.ln.n.Load() == before {
					t.Fatalf("the proxy accepted no connection")
				}
			})
		}
	}
}

// TestClientProxyErrors: a wrong password, a SOCKS4 request to a proxy that
// wants a password, and a proxy that is not there fail clearly.
func TestClientProxyErrors(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	creds := []proxy.Credential{{User: "alice", Password: "right"}}
	authed := startDuplexProxy(t, creds, nil)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	for _, tc := range []struct {
		name, proxy string
		tr          client.Transport
		want        string
	}{
		{"http wrong password ws", "http://alice:wrong@" + authed.Addr().String(), client.WebSocket, "407"},
		{"http wrong password sse", "http://alice:wrong@" + authed.Addr().String(), client.SSE, "407"},
		{"socks5 wrong password", "socks5://alice:wrong@" + authed.Addr().String(), client.WebSocket, "socks"},
		{"socks4 to an authenticating proxy", "socks4://alice@" + authed.Addr().String(), client.WebSocket, "socks4"},
		{"no proxy there", "socks5://" + deadAddr, client.WebSocket, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := fastOpts(tc.tr)
			opts.Proxy = tc.proxy
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, h.URL, opts)
			if err == nil {
				defer c.Close()
				_, err = c.Publish(ctx, "c", []byte("1"))
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
			t.Logf("%v", err)
		})
	}
}

// TestClientProxyFromEnvironment: with DialOptions.Proxy empty the client
// follows HTTP_PROXY, HTTPS_PROXY (by the hub URL's scheme), ALL_PROXY as
// the fallback, and NO_PROXY. The hub is named hubName, which only the
// proxy resolves, so success means the proxy was used and failure means
// it was not. (Go never proxies loopback from the environment.)
func TestClientProxyFromEnvironment(t *testing.T) {
	hubtest.CheckLeaks(t)
	creds := []proxy.Credential{{User: "alice", Password: "pw"}}
	authed := startDuplexProxy(t, creds, nil)
	open := startDuplexProxy(t, nil, nil)
	h := hubtest.Start(t, nil)
	_, port, _ := net.SplitHostPort(h.Addr)
	hubURL := "http://" + hubName + ":" + port
	for _, tc := range []struct {
		name  string
		env   map[string]string
		proxy string // DialOptions.Proxy
		works bool
	}{
		{"HTTP_PROXY", map[string]string{"HTTP_PROXY": "http://alice:pw@" + authed.Addr().String()}, "", true},
		{"http_proxy", map[string]string{"http_proxy": "http://alice:pw@" + authed.Addr().String()}, "", true},
		{"ALL_PROXY socks5h", map[string]string{"ALL_PROXY": "socks5h://alice:pw@" + authed.Addr().String()}, "", true},
		{"all_proxy socks4a", map[string]string{"all_proxy": "socks4a://" + open.Addr().String()}, "", true},
		{"HTTP_PROXY wins over ALL_PROXY", map[string]string{"HTTP_PROXY": "http://alice:pw@" + authed.Addr().String(), "ALL_PROXY": "socks5h://nobody:wrong@" + authed.Addr().String()}, "", true},
		{"HTTPS_PROXY is not for http hubs", map[string]string{"HTTPS_PROXY": "http://alice:pw@" + authed.Addr().String()}, "", false},
		{"NO_PROXY", map[string]string{"HTTP_PROXY": "http://alice:pw@" + authed.Addr().String(), "NO_PROXY": "example.org," + hubName}, "", false},
		{"direct ignores the environment", map[string]string{"ALL_PROXY": "socks5h://alice:pw@" + authed.Addr().String()}, "direct", false},
		{"explicit proxy wins", map[string]string{"ALL_PROXY": "socks5h://nobody:wrong@" + authed.Addr().String()}, "socks4a://" + open.Addr().String(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"} {
				t.Setenv(k, tc.env[k])
			}
			for _, tr := range []client.Transport{client.WebSocket, client.SSE} {
				opts := fastOpts(tr)
				opts.Proxy = tc.proxy
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				c, err := client.Dial(ctx, hubURL, opts)
				if err == nil {
					_, err = c.Publish(ctx, "env", []byte(`"hi"`))
					c.Close()
				}
				cancel()
				if tc.works && err != nil {
					t.Fatalf("%s: %v", tr, err)
				}
				if !tc.works && err == nil {
					t.Fatalf("%s: reached the hub by a name only the proxy resolves", tr)
				}
			}
		})
	}
}

// TestClientHTTPSHub: an https:// hub (TLS in front of it), every
// transport, directly and through duplex proxy by http:// (CONNECT, since
// the hub is https) and socks5h://.
func TestClientHTTPSHub(t *testing.T) {
	hubtest.CheckLeaks(t)
	px := startDuplexProxy(t, nil, nil)
	h := hubtest.Start(t, nil)
	srvTLS, cliTLS := selfSigned(t)
	front := startTLSFront(t, h.Addr, srvTLS)
	_, port, _ := net.SplitHostPort(front.ln.Addr().String())
	for _, via := range []string{"direct", "http://" + px.Addr().String(), "socks5h://" + px.Addr().String()} {
		for _, tr := range append(explicitTransports, client.Auto) {
			t.Run(strings.SplitN(via, ":", 2)[0]+"/"+string(tr), func(t *testing.T) {
				opts := fastOpts(tr)
				opts.Proxy = via
				opts.TLSConfig = cliTLS
				host := hubName // only the proxy resolves it
				if via == "direct" {
					host = "localhost"
				}
				c := dialClient(t, "https://"+host+":"+port, opts)
				ch := "tls-" + strings.SplitN(via, ":", 2)[0] + "-" + string(tr)
				s := subscribe(t, c, []string{ch}, nil)
				if tr == client.Auto && s.Transport() != client.WebSocket {
					t.Fatalf("auto uses %s", s.Transport())
				}
				publishN(t, c, ch, 1, 3)
				expectMessages(t, s, map[string][2]int{ch: {1, 3}})
			})
		}
	}
}
