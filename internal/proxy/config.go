package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Anonymity says what the HTTP forward path tells the origin about the
// client. It has no effect on CONNECT and SOCKS tunnels, whose bytes are
// never touched.
type Anonymity int

const (
	// Elite adds nothing and drops client-sent X-Forwarded-For, Forwarded,
	// Via, X-Real-IP and similar headers. It is the zero value.
	Elite Anonymity = iota
	// Anonymous adds a Via header but no client address.
	Anonymous
	// Transparent adds Via and appends the client address to
	// X-Forwarded-For.
	Transparent
)

func (a Anonymity) String() string {
	switch a {
	case Elite:
		return "elite"
	case Anonymous:
		return "anonymous"
	case Transparent:
		return "transparent"
	}
	return fmt.Sprintf("Anonymity(%d)", int(a))
}

// ParseAnonymity parses "elite", "anonymous" or "transparent".
func ParseAnonymity(s string) (Anonymity, error) {
	switch strings.ToLower(s) {
	case "elite", "":
		return Elite, nil
	case "anonymous":
		return Anonymous, nil
	case "transparent":
		return Transparent, nil
	}
	return 0, fmt.Errorf("unknown anonymity %q (want elite, anonymous or transparent)", s)
}

// Credential is one user allowed to use the proxy.
type Credential struct {
	User, Password string
}

// Config configures a [Server]. The zero value is a working, safe proxy:
// no authentication, private destinations refused, elite anonymity.
type Config struct {
	// Credentials, when not empty, turns authentication on: HTTP clients
	// must send Proxy-Authorization: Basic, SOCKS5 clients must use RFC
	// 1929, and SOCKS4 (which carries no password) is refused.
	Credentials []Credential

	// AllowPrivate lets clients reach every destination, including
	// loopback, private and link-local addresses.
	AllowPrivate bool
	// Allow opens the listed prefixes even though they are private.
	// Nil means none.
	Allow []netip.Prefix

	// Anonymity is the HTTP forward header policy. Zero means Elite.
	Anonymity Anonymity

	// Upstreams chains every outgoing connection through other proxies
	// (http:// or socks5://, optionally with user:password), rotated
	// round-robin; one that fails is skipped for that connection. Nil
	// means dial destinations directly.
	Upstreams []*url.URL
	// UpstreamProbe, when set, health-checks every upstream: it is called
	// each UpstreamHealthInterval with a dialer that tunnels through that
	// upstream, and says whether it carries (nil) or not. An upstream
	// whose probe fails twice in a row is taken out of rotation, and put
	// back after one probe passes, each with a log line and the
	// duplex_proxy_upstream_up gauge. The CLI passes the probes of duplex
	// proxy check (package check, ProbeTunnel); the proxy itself knows
	// nothing of messaging. Nil means no probes: every upstream stays in
	// rotation.
	UpstreamProbe func(ctx context.Context, tunnel func(ctx context.Context, network, addr string) (net.Conn, error)) error
	// UpstreamHealthInterval is the time between probe rounds; ctx of
	// each probe ends after the smaller of it and 5s. Zero means 10s.
	UpstreamHealthInterval time.Duration

	// HandshakeTimeout bounds the time from accept (or from the first byte
	// of a keep-alive request) until a request has been read in full.
	// Zero means 10s.
	HandshakeTimeout time.Duration
	// DialTimeout bounds resolving and connecting to a destination or
	// upstream. Zero means 10s.
	DialTimeout time.Duration
	// IdleTimeout closes a tunnel, a streamed response or a keep-alive
	// client connection after this long with no bytes in either
	// direction. It also bounds the wait for a response header, so it
	// must exceed the longest long poll. Zero means 5m; negative means
	// never.
	IdleTimeout time.Duration

	// MaxConns caps the client connections open at once; more are closed
	// on accept. Zero means 10000; negative means no cap.
	MaxConns int
	// MaxConnsPerClient caps the connections one client IP address may
	// have open at once. Zero means 1000; negative means no cap.
	MaxConnsPerClient int
	// MaxHeaderBytes caps an HTTP request head (request line and
	// headers). Zero means 32 KiB.
	MaxHeaderBytes int

	// LookupNetIP resolves destination names. Nil means
	// net.DefaultResolver.LookupNetIP(ctx, "ip", host). Tests use it to
	// make a name resolve to any address.
	LookupNetIP func(ctx context.Context, host string) ([]netip.Addr, error)
	// Dial connects to a checked destination address or an upstream.
	// Nil means a net.Dialer, without TCP keep-alive when IdleTimeout is
	// on.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ListenUDP opens the sockets of a SOCKS5 UDP association: the one
	// clients send to (laddr is the TCP listener's IP, port 0) and the
	// one that talks to destinations (laddr nil). Nil means
	// net.ListenUDP.
	ListenUDP func(network string, laddr *net.UDPAddr) (*net.UDPConn, error)

	// Logger receives one access-log line per tunnel or forwarded
	// request (unless AccessLog is set), and errors. Nil means
	// slog.Default().
	Logger *slog.Logger
	// AccessLog, when set, receives the access-log lines instead of
	// Logger: one Write per line, each the JSON object slog's
	// JSONHandler would write at level INFO, formatted without slog
	// (cheaper on the tunnel's path). Writes may come from many
	// goroutines at once, so it must be safe for that and should not
	// block (see internal/logbuf). Nil means lines go to Logger.
	AccessLog io.Writer
}

// withDefaults returns a copy of c with zero values filled in.
func (c Config) withDefaults() (Config, error) {
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.UpstreamHealthInterval <= 0 {
		c.UpstreamHealthInterval = 10 * time.Second
	}
	if c.MaxConns == 0 {
		c.MaxConns = 10000
	}
	if c.MaxConnsPerClient == 0 {
		c.MaxConnsPerClient = 1000
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 32 << 10
	}
	if c.LookupNetIP == nil {
		c.LookupNetIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if c.Dial == nil {
		// No TCP keep-alive while the idle timeout bounds silent tunnels
		// (see Server.Listen).
		d := &net.Dialer{}
		if c.IdleTimeout > 0 {
			d.KeepAlive = -1
		}
		c.Dial = d.DialContext
	}
	if c.ListenUDP == nil {
		c.ListenUDP = net.ListenUDP
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch c.Anonymity {
	case Elite, Anonymous, Transparent:
	default:
		return c, fmt.Errorf("invalid anonymity %d", int(c.Anonymity))
	}
	for _, cr := range c.Credentials {
		if cr.User == "" {
			return c, errors.New("credential with empty user")
		}
		if len(cr.User) > 255 || len(cr.Password) > 255 {
			return c, errors.New("credential longer than 255 bytes (the SOCKS5 limit)")
		}
	}
	ups := make([]*url.URL, 0, len(c.Upstreams))
	for _, u := range c.Upstreams {
		if u == nil {
			return c, errors.New("nil upstream")
		}
		switch u.Scheme {
		case "http", "socks5", "socks5h":
		default:
			return c, fmt.Errorf("upstream %s: scheme must be http or socks5", u.Redacted())
		}
		if u.Hostname() == "" || u.Port() == "" {
			return c, fmt.Errorf("upstream %s: want scheme://[user:pass@]host:port", u.Redacted())
		}
		cp := *u
		ups = append(ups, &cp)
	}
	c.Upstreams = ups
	c.Allow = append([]netip.Prefix(nil), c.Allow...)
	c.Credentials = append([]Credential(nil), c.Credentials...)
	return c, nil
}
