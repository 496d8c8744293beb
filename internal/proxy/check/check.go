package check

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Protocols, in the order they are reported.
const (
	ProtoHTTP      = "http"       // absolute-form forwarding
	ProtoConnect   = "connect"    // HTTP CONNECT tunnel
	ProtoSOCKS4    = "socks4"     // the client resolves the name
	ProtoSOCKS4a   = "socks4a"    // the proxy resolves the name
	ProtoSOCKS5    = "socks5"     // the client resolves the name
	ProtoSOCKS5h   = "socks5h"    // the proxy resolves the name
	ProtoSOCKS5UDP = "socks5-udp" // UDP ASSOCIATE, one datagram echoed
)

// Protocols lists every protocol Check probes.
var Protocols = []string{ProtoHTTP, ProtoConnect, ProtoSOCKS4, ProtoSOCKS4a, ProtoSOCKS5, ProtoSOCKS5h, ProtoSOCKS5UDP}

// Transports, probed through each protocol that works. The names are the
// ones --need takes.
const (
	TransportHTTP      = "http"   // GET /v1/echo, request/response
	TransportWebSocket = "ws"     // /v1/echo upgrade, two messages each way
	TransportSSE       = "sse"    // GET /v1/sse, messages one by one
	TransportStream    = "stream" // GET /v1/stream (NDJSON), messages one by one
	TransportPoll      = "poll"   // one long poll of Config.Poll
	TransportHold      = "hold"   // an SSE stream left silent for Config.Poll
	TransportUDP       = "udp"    // a datagram through SOCKS5 UDP ASSOCIATE
)

// Transports lists the transports in the order they are reported.
var Transports = []string{TransportHTTP, TransportWebSocket, TransportSSE, TransportStream, TransportPoll, TransportHold, TransportUDP}

// Statuses of a transport probe.
const (
	StatusOK       = "ok"
	StatusBuffered = "buffered" // a stream's message came late or not at all
	StatusCut      = "cut"      // the connection was closed while idle
	StatusFailed   = "failed"
)

// Anonymity levels, from what the judge saw of a forwarded request.
const (
	Transparent = "transparent" // the client's address reached the judge
	Anonymous   = "anonymous"   // a proxy header, but no client address
	Elite       = "elite"       // neither
)

// Config configures Check. Only Judge is required.
type Config struct {
	// Judge is the base URL (http://host:port) of a duplex hub that the
	// checker reaches directly and probes through the proxy: /v1/echo for
	// request/response, WebSocket and anonymity, the subscribe endpoints
	// for streams and polls, POST /v1/publish (directly) to send what the
	// streams must deliver. It must not require a token.
	Judge *url.URL
	// RemoteName is the host name the remote-DNS protocols (socks4a,
	// socks5h) ask the proxy to resolve; it must resolve, at the proxy,
	// to the judge. Empty means the judge's host when it is a name,
	// "localhost" when it is a loopback address, and otherwise those
	// protocols are reported as not probed.
	RemoteName string
	// UDPEcho is the host:port of a UDP echo server (it sends each
	// datagram back unchanged) for the UDP ASSOCIATE probe. Empty means
	// that protocol is not probed.
	UDPEcho string
	// Timeout bounds each step of a probe: connecting, a handshake, an
	// answer. Zero means 10s.
	Timeout time.Duration
	// Poll is the long-poll wait and how long a stream is held silent.
	// Zero means 30s.
	Poll time.Duration
	// Deliver is how soon a message published while a stream is open
	// must arrive through it; later (or never) is "buffered". Zero means
	// 2s.
	Deliver time.Duration
	// Dial connects to the proxy. Nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = 30 * time.Second
	}
	if c.Deliver <= 0 {
		c.Deliver = 2 * time.Second
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{}).DialContext
	}
	if c.RemoteName == "" && c.Judge != nil {
		h := c.Judge.Hostname()
		if a, err := netip.ParseAddr(h); err != nil {
			c.RemoteName = h
		} else if a.IsLoopback() {
			c.RemoteName = "localhost"
		}
	}
	return c
}

// TransportResult is one transport through one protocol.
type TransportResult struct {
	Transport string `json:"transport"`
	Status    string `json:"status"` // ok, buffered, cut or failed
	Detail    string `json:"detail,omitempty"`
}

// ProtocolResult is one protocol through the proxy.
type ProtocolResult struct {
	Protocol string `json:"protocol"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
	// ConnectMS is the time to a usable tunnel (TCP connect plus the
	// proxy handshake; for forwarding, the TCP connect), TTFBMS the time
	// from the start to the judge's first answer byte.
	ConnectMS float64 `json:"connect_ms,omitempty"`
	TTFBMS    float64 `json:"ttfb_ms,omitempty"`
	// Anonymity is set for forwarding: elite, anonymous or transparent.
	Anonymity  string            `json:"anonymity,omitempty"`
	Transports []TransportResult `json:"transports,omitempty"`
}

// Result is what Check found out about one proxy.
type Result struct {
	Proxy     string           `json:"proxy"` // as given, password redacted
	Line      int              `json:"line,omitempty"`
	Protocols []ProtocolResult `json:"protocols"`
	// Carries lists the transports that worked through at least one
	// protocol, in the order of Transports.
	Carries []string `json:"carries"`
	// Anonymity is the forwarding path's, "" when it does not forward.
	Anonymity string `json:"anonymity,omitempty"`
	// Models are the communication models the proxy can carry (see
	// [Models]); Verdict says it in one line.
	Models  []string `json:"models"`
	Verdict string   `json:"verdict"`
}

// Works reports whether protocol p worked.
func (r Result) Works(p string) bool {
	for _, pr := range r.Protocols {
		if pr.Protocol == p && pr.OK {
			return true
		}
	}
	return false
}

// Carried reports whether transport t worked through some protocol.
func (r Result) Carried(t string) bool {
	for _, c := range r.Carries {
		if c == t {
			return true
		}
	}
	return false
}

// Models are the communication models, each with the transports that
// carry it (any one suffices).
var Models = []struct {
	Name       string
	Transports []string
}{
	{"request/response", []string{TransportHTTP}},
	{"long polling", []string{TransportPoll}},
	{"streaming", []string{TransportSSE, TransportStream}},
	{"held streams", []string{TransportHold}},
	{"full duplex", []string{TransportWebSocket}},
	{"datagrams", []string{TransportUDP}},
}

// Check probes the proxy t: every protocol of its scheme at once, then
// every transport through each protocol that worked, at once. It returns
// when all probes are done or ctx ends; a full check takes about
// cfg.Poll plus a few round trips.
func Check(ctx context.Context, cfg Config, t Target) Result {
	cfg = cfg.withDefaults()
	p := &prober{cfg: cfg, t: t}
	res := Result{Proxy: t.String(), Line: t.Line}
	res.Protocols = make([]ProtocolResult, len(t.Protocols))
	var wg sync.WaitGroup
	for i, proto := range t.Protocols {
		wg.Go(func() { res.Protocols[i] = p.protocol(ctx, proto) })
	}
	wg.Wait()
	for _, pr := range res.Protocols {
		if pr.Protocol == ProtoHTTP && pr.OK {
			res.Anonymity = pr.Anonymity
		}
	}
	for _, tr := range Transports {
		for _, pr := range res.Protocols {
			if carried(pr, tr) {
				res.Carries = append(res.Carries, tr)
				break
			}
		}
	}
	for _, m := range Models {
		for _, tr := range m.Transports {
			if res.Carried(tr) {
				res.Models = append(res.Models, m.Name)
				break
			}
		}
	}
	if res.Carries == nil {
		res.Carries = []string{}
		res.Models = []string{}
	}
	res.Verdict = verdict(res)
	return res
}

func carried(pr ProtocolResult, tr string) bool {
	for _, r := range pr.Transports {
		if r.Transport == tr && r.Status == StatusOK {
			return true
		}
	}
	return false
}

func verdict(r Result) string {
	if len(r.Models) == 0 {
		for _, pr := range r.Protocols {
			if pr.Error != "" {
				return "carries nothing: " + pr.Error
			}
		}
		return "carries nothing"
	}
	return "carries " + strings.Join(r.Models, ", ")
}

// prober holds what the probes of one proxy share.
type prober struct {
	cfg Config
	t   Target
}

// credentials returns the target's user and password.
func (p *prober) credentials() (user, pass string) {
	if p.t.URL.User != nil {
		user = p.t.URL.User.Username()
		pass, _ = p.t.URL.User.Password()
	}
	return user, pass
}

// proxyURL is the proxy as the given scheme, with the credentials.
func (p *prober) proxyURL(scheme string) *url.URL {
	return &url.URL{Scheme: scheme, User: p.t.URL.User, Host: p.t.URL.Host}
}

// judgeFor is the judge's base URL as reached through proto: by name for
// the remote-DNS protocols.
func (p *prober) judgeFor(proto string) (*url.URL, error) {
	u := *p.cfg.Judge
	u.Path, u.RawQuery = strings.TrimRight(u.Path, "/"), ""
	if proto == ProtoSOCKS4a || proto == ProtoSOCKS5h {
		if p.cfg.RemoteName == "" {
			return nil, errors.New("not probed: the judge is an IP address and no name for it was given")
		}
		port := u.Port()
		if port == "" {
			port = "80"
		}
		u.Host = net.JoinHostPort(p.cfg.RemoteName, port)
	}
	return &u, nil
}

// timedDial wraps dial and records how long the first dial took.
type timedDial struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	mu   sync.Mutex
	took time.Duration
}

func (d *timedDial) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	start := time.Now()
	c, err := d.dial(ctx, network, addr)
	d.mu.Lock()
	if d.took == 0 {
		d.took = time.Since(start)
	}
	d.mu.Unlock()
	return c, err
}

// route is how a protocol reaches the judge: an HTTP transport (forward
// proxy or tunnel dialer), and the same for the client package.
type route struct {
	judge   *url.URL
	forward *url.URL // the proxy as http://, for forwarding; else nil
	tunnel  func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (p *prober) route(proto string) (route, error) {
	j, err := p.judgeFor(proto)
	if err != nil {
		return route{}, err
	}
	r := route{judge: j}
	if proto == ProtoHTTP {
		r.forward = p.proxyURL("http")
		return r, nil
	}
	scheme := map[string]string{ProtoConnect: "http", ProtoSOCKS4: "socks4", ProtoSOCKS4a: "socks4a", ProtoSOCKS5: "socks5", ProtoSOCKS5h: "socks5h"}[proto]
	r.tunnel, err = newTunnel(p.proxyURL(scheme).String(), p.cfg.Dial)
	return r, err
}

// httpClient is a client whose every request takes a new connection
// through r, so each probe measures its own setup.
func (r route) httpClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true, ForceAttemptHTTP2: false}
	if r.forward != nil {
		tr.Proxy = http.ProxyURL(r.forward)
		tr.DialContext = dial
	} else {
		tr.DialContext = r.tunnel
		if dial != nil {
			tr.DialContext = dial
		}
	}
	return &http.Client{Transport: tr}
}

// protocol probes one protocol, then its transports.
func (p *prober) protocol(ctx context.Context, proto string) ProtocolResult {
	pr := ProtocolResult{Protocol: proto}
	if proto == ProtoSOCKS5UDP {
		return p.udp(ctx)
	}
	r, err := p.route(proto)
	if err != nil {
		pr.Error = err.Error()
		return pr
	}
	base := r.tunnel
	if r.forward != nil {
		base = p.cfg.Dial
	}
	td := &timedDial{dial: base}
	hc := r.httpClient(td.DialContext)
	defer hc.CloseIdleConnections()
	echo, ttfb, err := getEcho(ctx, hc, r.judge, p.cfg.Timeout)
	if err != nil {
		pr.Error = err.Error()
		return pr
	}
	pr.OK = true
	pr.ConnectMS, pr.TTFBMS = ms(td.took), ms(ttfb)
	if proto == ProtoHTTP {
		pr.Anonymity = p.anonymity(ctx, echo)
	}
	pr.Transports = append(pr.Transports, TransportResult{Transport: TransportHTTP, Status: StatusOK})
	pr.Transports = append(pr.Transports, p.transports(ctx, r)...)
	return pr
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// echoReply is what the judge's GET /v1/echo answers.
type echoReply struct {
	RemoteAddr string              `json:"remote_addr"`
	Headers    map[string][]string `json:"headers"`
}

// getEcho fetches judge/v1/echo with hc and returns the reply and the
// time to its first byte.
func getEcho(ctx context.Context, hc *http.Client, judge *url.URL, timeout time.Duration) (*echoReply, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var first time.Time
	start := time.Now()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, judge.String()+"/v1/echo", nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("User-Agent", "duplex-proxy-check")
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, 0, fmt.Errorf("no answer within %v (the proxy does not speak this protocol, or the judge is out of its reach)", timeout)
		}
		return nil, 0, shortErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("judge answered %s", resp.Status)
	}
	var e echoReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e); err != nil {
		return nil, 0, fmt.Errorf("judge answer: %v", err)
	}
	return &e, first.Sub(start), nil
}

// shortErr drops the request-URL prefix *url.Error adds.
func shortErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// clientAddressHeaders name the client's address; proxyHeaders only give
// a proxy away.
var (
	clientAddressHeaders = []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip", "Client-Ip", "True-Client-Ip", "X-Client-Ip", "Forwarded-For", "X-Originating-Ip"}
	proxyHeaders         = []string{"Via", "Proxy-Connection", "X-Proxy-Id", "X-Bluecoat-Via", "Proxy-Agent"}
)

// anonymity classifies what the judge saw of a forwarded request: the
// checker's own address (as the judge sees it directly) or a client
// address header anywhere makes it transparent.
func (p *prober) anonymity(ctx context.Context, e *echoReply) string {
	own := ""
	if d, _, err := getEcho(ctx, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, p.cfg.Judge, p.cfg.Timeout); err == nil {
		own, _, _ = net.SplitHostPort(d.RemoteAddr)
	}
	has := func(names []string) bool {
		for k := range e.Headers {
			for _, n := range names {
				if strings.EqualFold(k, n) {
					return true
				}
			}
		}
		return false
	}
	if has(clientAddressHeaders) {
		return Transparent
	}
	// A loopback judge sees the proxy at the checker's own address, so
	// only a header value can tell.
	if own != "" {
		for k, vs := range e.Headers {
			if strings.EqualFold(k, "User-Agent") || strings.EqualFold(k, "Host") {
				continue
			}
			for _, v := range vs {
				if strings.Contains(v, own) {
					return Transparent
				}
			}
		}
	}
	if has(proxyHeaders) {
		return Anonymous
	}
	return Elite
}

// newChannel names a channel no one else uses.
func newChannel() string {
	var b [8]byte
	rand.Read(b[:])
	return "proxy-check-" + hex.EncodeToString(b[:])
}

// ProbeTunnel runs the request/response and WebSocket probes of [Check]
// against cfg.Judge through tunnel, a dialer that reaches any address
// through some proxy, and returns the first failure. It is the health
// check of `duplex proxy --upstream` pools: an upstream carries when this
// returns nil. Each probe is bounded by cfg.Timeout.
func ProbeTunnel(ctx context.Context, cfg Config, tunnel func(ctx context.Context, network, addr string) (net.Conn, error)) error {
	cfg = cfg.withDefaults()
	p := &prober{cfg: cfg}
	j, _ := p.judgeFor(ProtoConnect)
	r := route{judge: j, tunnel: tunnel}
	hc := r.httpClient(nil)
	defer hc.CloseIdleConnections()
	if _, _, err := getEcho(ctx, hc, j, cfg.Timeout); err != nil {
		return fmt.Errorf("request/response: %w", err)
	}
	if ws := p.websocket(ctx, r); ws.Status != StatusOK {
		return fmt.Errorf("websocket: %s", ws.Detail)
	}
	return nil
}
