package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
	"golang.org/x/net/proxy"
)

// dialFunc is the shape of every dialer here.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// proxySchemes are the proxy URL schemes the client speaks.
var proxySchemes = map[string]string{
	"http": "80", "https": "443",
	"socks4": "1080", "socks4a": "1080", "socks5": "1080", "socks5h": "1080",
}

// parseProxy parses and checks a proxy URL. A bare host:port is taken as
// http://host:port, as curl and Go's net/http do.
func parseProxy(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		if u2, err2 := url.Parse("http://" + raw); err2 == nil && u2.Host != "" && !strings.Contains(raw, "://") {
			u, err = u2, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("invalid proxy URL %q: %v", raw, err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	port, ok := proxySchemes[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("invalid proxy URL %q: scheme %q is not one of http, https, socks4, socks4a, socks5, socks5h", raw, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("invalid proxy URL %q: no host", raw)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u, nil
}

// envProxy returns the proxy the environment asks for to reach target, or
// nil. HTTP_PROXY and HTTPS_PROXY (or their lowercase forms) pick by the
// target's scheme; ALL_PROXY is the fallback for both; NO_PROXY excludes
// hosts. As in Go's net/http, requests to localhost and loopback
// addresses never use an environment proxy.
func envProxy(target *url.URL) (*url.URL, error) {
	all := getenvAny("ALL_PROXY", "all_proxy")
	cfg := httpproxy.Config{
		HTTPProxy:  firstNonEmpty(getenvAny("HTTP_PROXY", "http_proxy"), all),
		HTTPSProxy: firstNonEmpty(getenvAny("HTTPS_PROXY", "https_proxy"), all),
		NoProxy:    getenvAny("NO_PROXY", "no_proxy"),
	}
	u, err := cfg.ProxyFunc()(target)
	if err != nil || u == nil {
		return nil, err
	}
	return parseProxy(u.String())
}

func getenvAny(keys ...string) string {
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return ""
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// tunnelDialer returns a dialer that opens a raw TCP connection to any
// address through p: SOCKS for socks schemes, CONNECT for http and https.
// With p nil it is base itself.
func tunnelDialer(p *url.URL, base dialFunc, tlsConfig *tls.Config) dialFunc {
	if p == nil {
		return base
	}
	user, pass := "", ""
	hasPass := false
	if p.User != nil {
		user = p.User.Username()
		pass, hasPass = p.User.Password()
	}
	switch p.Scheme {
	case "socks4", "socks4a":
		d := &socks4Dialer{
			proxyAddr: p.Host, user: user, remoteDNS: p.Scheme == "socks4a", dial: base,
			lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
				return net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
			},
		}
		return d.DialContext
	case "socks5", "socks5h":
		var auth *proxy.Auth
		if p.User != nil {
			auth = &proxy.Auth{User: user, Password: pass}
		}
		d, err := proxy.SOCKS5("tcp", p.Host, auth, contextDialer(base))
		if err != nil {
			return func(context.Context, string, string) (net.Conn, error) { return nil, err }
		}
		cd := d.(proxy.ContextDialer)
		if p.Scheme == "socks5h" {
			return cd.DialContext
		}
		// socks5://: resolve here and hand the proxy an address, as curl does.
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if _, err := netip.ParseAddr(host); err != nil {
				ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
				if err != nil {
					return nil, &net.OpError{Op: "dial", Net: network, Addr: socksAddr(addr), Err: err}
				}
				if len(ips) == 0 {
					return nil, &net.OpError{Op: "dial", Net: network, Addr: socksAddr(addr), Err: fmt.Errorf("no address for %s", host)}
				}
				addr = net.JoinHostPort(ips[0].Unmap().String(), port)
			}
			return cd.DialContext(ctx, network, addr)
		}
	default: // http, https
		c := &connectDialer{proxy: p, dial: base, tls: tlsConfig}
		if p.User != nil {
			c.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
			_ = hasPass
		}
		return c.DialContext
	}
}

type contextDialer dialFunc

func (d contextDialer) Dial(network, addr string) (net.Conn, error) {
	return d(context.Background(), network, addr)
}

func (d contextDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d(ctx, network, addr)
}

// connectDialer opens tunnels with HTTP CONNECT, the way WebSocket goes
// through an HTTP proxy (forwarding an Upgrade request is not something
// every proxy does: tinyproxy strips Upgrade).
type connectDialer struct {
	proxy *url.URL
	auth  string // Proxy-Authorization value, or ""
	dial  dialFunc
	tls   *tls.Config
}

// maxConnectResponse bounds the CONNECT response head.
const maxConnectResponse = 64 << 10

// DialContext returns a tunnel to addr. Errors are *net.OpError with Op
// "proxyconnect", as net/http reports proxy failures.
func (d *connectDialer) DialContext(ctx context.Context, network, addr string) (_ net.Conn, err error) {
	defer func() {
		if err != nil {
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "proxyconnect" {
				err = &net.OpError{Op: "proxyconnect", Net: network, Source: socksAddr(d.proxy.Host), Addr: socksAddr(addr), Err: err}
			}
		}
	}()
	conn, err := d.dial(ctx, "tcp", d.proxy.Host)
	if err != nil {
		return nil, err
	}
	if d.proxy.Scheme == "https" {
		cfg := &tls.Config{}
		if d.tls != nil {
			cfg = d.tls.Clone()
		}
		cfg.ServerName = d.proxy.Hostname()
		cfg.NextProtos = nil
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake with proxy: %w", err)
		}
		conn = tc
	}
	c, err := d.handshake(ctx, conn, addr)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (d *connectDialer) handshake(ctx context.Context, conn net.Conn, addr string) (_ net.Conn, err error) {
	// ctx's end (deadline included) cuts the handshake, through the
	// connection's deadline, and then the error is ctx's.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() || (err != nil && ctx.Err() != nil) {
			err = ctx.Err()
		}
	}()
	var b strings.Builder
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", addr, addr)
	if d.auth != "" {
		fmt.Fprintf(&b, "Proxy-Authorization: %s\r\n", d.auth)
	}
	b.WriteString("\r\n")
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return nil, fmt.Errorf("write CONNECT request: %w", err)
	}
	br := bufio.NewReaderSize(&limitedConn{Conn: conn, n: maxConnectResponse}, 4096)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, fmt.Errorf("read CONNECT response: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("proxy refused CONNECT %s: %s", addr, resp.Status)
	}
	if n := br.Buffered(); n > 0 {
		// Bytes after the response head belong to the tunnel.
		extra, _ := br.Peek(n)
		return &prefixConn{Conn: conn, prefix: append([]byte(nil), extra...)}, nil
	}
	return conn, nil
}

// limitedConn reads at most n bytes from Conn (a bound on a proxy's
// response head).
type limitedConn struct {
	net.Conn
	n int
}

func (c *limitedConn) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errors.New("CONNECT response head too long")
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.Conn.Read(p)
	c.n -= n
	return n, err
}

// prefixConn returns prefix before reading from Conn.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// ProxyDialer returns a dialer that opens raw TCP connections to any
// address through the proxy at proxyURL, the way the client's own
// transports tunnel: SOCKS4 and 4a here, SOCKS5 and 5h with
// golang.org/x/net/proxy (socks5:// resolves names locally, socks5h://
// lets the proxy resolve them), HTTP CONNECT for http:// and https://.
// Credentials in the URL are used. base dials the proxy itself; nil means
// a net.Dialer. It exists for tools that probe proxies (duplex proxy
// check), so they go through the same code a subscription does.
func ProxyDialer(proxyURL string, base func(ctx context.Context, network, addr string) (net.Conn, error)) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	u, err := parseProxy(proxyURL)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if base == nil {
		base = (&net.Dialer{}).DialContext
	}
	return tunnelDialer(u, base, nil), nil
}
