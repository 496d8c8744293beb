package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/duplexhq/duplex/internal/logbuf"
	"github.com/duplexhq/duplex/internal/proxy"
	"github.com/duplexhq/duplex/internal/proxy/check"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func runProxy(ctx context.Context, stdio Stdio, args []string) error {
	if len(args) > 0 && args[0] == "check" {
		return runProxyCheck(ctx, stdio, args[1:])
	}
	fs := newFlagSet(stdio, "proxy", "[flags] | check [flags] PROXY...")
	listen := fs.String("listen", envOr("DUPLEX_PROXY_LISTEN", "127.0.0.1:1080"), "address to listen on (HTTP, SOCKS4/4a and SOCKS5 on one port)")
	var auths, allows, upstreams listFlag
	fs.Var(&auths, "auth", "require `user:pass` (repeatable; or DUPLEX_PROXY_AUTH=u1:p1,u2:p2); SOCKS4 is refused while auth is on")
	fs.Var(&allows, "allow", "let clients reach this private `CIDR` (repeatable)")
	fs.Var(&upstreams, "upstream", "chain through this proxy `URL`, http:// or socks5:// (repeatable, round-robin)")
	upstreamHealth := fs.String("upstream-health", "", "probe each --upstream against this duplex hub `URL` (http://host:port), as duplex proxy check does; one that stops carrying leaves the rotation until it recovers (empty: no probes)")
	upstreamHealthEvery := fs.Duration("upstream-health-interval", 10*time.Second, "time between upstream health probes")
	allowPrivate := fs.Bool("allow-private", false, "let clients reach loopback, private and link-local destinations")
	allowAnon := fs.Bool("allow-anonymous", false, "allow listening on a non-loopback address without --auth")
	anonymity := fs.String("anonymity", "elite", "HTTP forward headers: elite, anonymous or transparent")
	handshake := fs.Duration("handshake-timeout", 10*time.Second, "time allowed for a client to send its request")
	dial := fs.Duration("dial-timeout", 10*time.Second, "time allowed to resolve and connect to a destination")
	idle := fs.Duration("idle-timeout", 5*time.Minute, "close tunnels silent this long both ways (0: never)")
	maxConns := fs.Int("max-conns", 10000, "cap on open client connections (0: none)")
	maxPerClient := fs.Int("max-conns-per-client", 1000, "cap on open connections per client IP (0: none)")
	grace := fs.Duration("shutdown-grace", 10*time.Second, "on SIGINT/SIGTERM, how long open tunnels may finish")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on this `address` (/metrics); empty: off")
	quiet := fs.Bool("quiet", false, "no access log")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stdio.Err, "duplex proxy: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}

	cfg := proxy.Config{
		AllowPrivate:      *allowPrivate,
		HandshakeTimeout:  *handshake,
		DialTimeout:       *dial,
		IdleTimeout:       *idle,
		MaxConns:          *maxConns,
		MaxConnsPerClient: *maxPerClient,
	}
	if *idle == 0 {
		cfg.IdleTimeout = -1
	}
	if *maxConns == 0 {
		cfg.MaxConns = -1
	}
	if *maxPerClient == 0 {
		cfg.MaxConnsPerClient = -1
	}
	if len(auths) == 0 {
		// From the environment, so passwords need not show in ps.
		if v := envOr("DUPLEX_PROXY_AUTH", ""); v != "" {
			auths = strings.Split(v, ",")
		}
	}
	for _, a := range auths {
		u, p, ok := strings.Cut(a, ":")
		if !ok || u == "" {
			return fmt.Errorf("--auth %q: want user:pass", a)
		}
		cfg.Credentials = append(cfg.Credentials, proxy.Credential{User: u, Password: p})
	}
	for _, a := range allows {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			ip, err2 := netip.ParseAddr(a)
			if err2 != nil {
				return fmt.Errorf("--allow %q: %w", a, err)
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		cfg.Allow = append(cfg.Allow, p)
	}
	for _, s := range upstreams {
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("--upstream: %w", err)
		}
		cfg.Upstreams = append(cfg.Upstreams, u)
	}
	if *upstreamHealth != "" {
		u, err := url.Parse(*upstreamHealth)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return fmt.Errorf("--upstream-health %q: want the http:// URL of a duplex hub", *upstreamHealth)
		}
		if len(cfg.Upstreams) == 0 {
			return fmt.Errorf("--upstream-health needs --upstream")
		}
		cfg.UpstreamHealthInterval = *upstreamHealthEvery
		probe := check.Config{Judge: u, Timeout: min(*upstreamHealthEvery, 5*time.Second)}
		cfg.UpstreamProbe = func(ctx context.Context, tunnel func(ctx context.Context, network, addr string) (net.Conn, error)) error {
			return check.ProbeTunnel(ctx, probe, tunnel)
		}
	}
	var err error
	if cfg.Anonymity, err = proxy.ParseAnonymity(*anonymity); err != nil {
		return fmt.Errorf("--anonymity: %w", err)
	}
	if !isLoopbackListen(*listen) && len(cfg.Credentials) == 0 && !*allowAnon {
		return fmt.Errorf("refusing to run an open proxy on %s: add --auth user:pass, or --allow-anonymous", *listen)
	}
	// The access log goes through an asynchronous buffer: a line costs an
	// append, not a write(2), on the tunnel's path. closeLog writes out
	// every buffered line; it runs after Shutdown, once every tunnel has
	// logged, and on every other return.
	closeLog := func() {}
	if *quiet {
		cfg.Logger = slog.New(slog.DiscardHandler)
	} else {
		alog := logbuf.New(stdio.Err, logbuf.Config{})
		closeLog = func() { alog.Close() }
		cfg.Logger = slog.New(slog.NewJSONHandler(alog, nil))
		cfg.AccessLog = alog
	}
	defer closeLog()
	srv, err := proxy.New(cfg)
	if err != nil {
		return err
	}

	ln, err := srv.Listen(ctx, *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var msrv *http.Server
	if *metricsAddr != "" {
		mln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("metrics listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		msrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(mln)
		fmt.Fprintf(stdio.Out, "duplex proxy metrics on http://%s/metrics\n", mln.Addr())
	}
	fmt.Fprintf(stdio.Out, "duplex proxy listening on %s (http, socks4, socks5)\n", ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if msrv != nil {
			msrv.Close()
		}
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *grace)
	defer cancel()
	if msrv != nil {
		msrv.Shutdown(sctx)
	}
	serr := srv.Shutdown(sctx)
	<-errc
	closeLog()
	if serr != nil {
		fmt.Fprintf(stdio.Err, "duplex proxy: shutdown: %v (open tunnels were closed)\n", serr)
	}
	return nil
}

// isLoopbackListen reports whether addr only listens on loopback.
func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
