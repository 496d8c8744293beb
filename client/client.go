package client

// Locks: Client.mu, Subscription.mu, autoState.mu and wsCommander.mu are
// each taken alone, never one inside another, so there is no lock order to
// keep. No lock is held while calling hooks, dialing or doing I/O.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// Transport names a way of talking to the hub.
type Transport string

// Transports. The zero value is [Auto].
const (
	// Auto tries WebSocket, falls back to SSE and then to long polling,
	// and remembers what worked for later connections of the same Client.
	Auto Transport = "auto"
	// WebSocket is GET /v1/ws: full duplex; Publish goes over it too.
	WebSocket Transport = "ws"
	// SSE is GET /v1/sse, Server-Sent Events.
	SSE Transport = "sse"
	// Stream is GET /v1/stream, NDJSON over a chunked response.
	Stream Transport = "stream"
	// Poll is GET /v1/poll, long polling.
	Poll Transport = "poll"
)

// ParseTransport parses a transport name: auto, ws, sse, stream or poll
// ("" is auto; "websocket" is ws).
func ParseTransport(s string) (Transport, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return Auto, nil
	case "ws", "websocket":
		return WebSocket, nil
	case "sse":
		return SSE, nil
	case "stream":
		return Stream, nil
	case "poll":
		return Poll, nil
	}
	return "", fmt.Errorf("unknown transport %q (want auto, ws, sse, stream or poll)", s)
}

// DialOptions configure a [Client]. A nil *DialOptions is the zero value:
// every field's zero value is documented and usable.
type DialOptions struct {
	// Transport is the transport to use. Zero means Auto.
	Transport Transport

	// Token, when set, is sent as "Authorization: Bearer <Token>" on every
	// request and WebSocket handshake.
	Token string

	// Header holds extra headers for every request. Nil means none.
	Header http.Header

	// Proxy is the proxy URL: http://, https://, socks4://, socks4a://,
	// socks5:// or socks5h://, with user:password when the proxy wants
	// them. Empty means the environment: HTTP_PROXY or HTTPS_PROXY by the
	// hub URL's scheme, ALL_PROXY as the fallback, minus NO_PROXY (and, as
	// in net/http, never for localhost and loopback). "direct" means no
	// proxy at all. WebSocket goes through HTTP proxies with CONNECT; the
	// other transports are forwarded requests (or CONNECT for https hubs),
	// each on a new connection to the proxy.
	Proxy string

	// TLSConfig is used for https hubs and https proxies: set RootCAs to
	// trust a hub whose certificate a private CA signed ([CertPoolFromPEM]
	// reads one). Nil means the system defaults.
	TLSConfig *tls.Config

	// Dial opens TCP connections (to the hub, or to the proxy). Nil means
	// a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// ConnectTimeout bounds opening a transport: dialing, the proxy
	// handshake, TLS and the HTTP or WebSocket handshake. Zero means 10s.
	ConnectTimeout time.Duration
	// ReadTimeout is how long an open stream may stay silent before the
	// client takes it for dead and reconnects. The hub sends heartbeats
	// every 15s (SSE, stream), and over WebSocket the client pings every
	// ReadTimeout/3. Zero means 45s.
	ReadTimeout time.Duration
	// RequestTimeout bounds one request/response call (Publish, History,
	// Info). Zero means 30s.
	RequestTimeout time.Duration
	// PollTimeout is the long-poll wait asked of the hub. Zero means 25s.
	PollTimeout time.Duration

	// MinBackoff and MaxBackoff bound the full-jitter exponential backoff
	// between reconnects: the n-th wait is uniform in
	// [0, min(MaxBackoff, MinBackoff*2^n)). Zero means 250ms and 30s.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// MaxFailures is how many times in a row Auto lets a transport fail
	// after it opened (before delivering anything or staying up for
	// StableAfter) before it falls back to the next one. Zero means 3.
	MaxFailures int
	// StableAfter is how long a connection must stay up to count as
	// healthy even when it delivered nothing. Zero means 10s.
	StableAfter time.Duration

	// MaxFrame bounds one WebSocket frame, SSE event or NDJSON line from
	// the hub. Zero means 4 MiB.
	MaxFrame int

	// NoCompression stops the WebSocket transport from offering
	// permessage-deflate (RFC 7692). False (the zero value) offers it
	// without context takeover either way: the hub then sends larger
	// publications compressed (it compresses each once for all its
	// subscribers) and the client compresses commands of 512 bytes and
	// more. MaxFrame bounds a message as inflated.
	NoCompression bool

	// OnConnect, if set, is called each time a subscription's transport
	// opens. OnDisconnect, if set, is called each time a connection
	// attempt fails or an open connection ends, with why (not when the
	// subscription is closed). They run on the subscription's goroutine
	// and must not block.
	OnConnect    func(t Transport)
	OnDisconnect func(t Transport, err error)

	// Logger receives debug logs of reconnects and fallbacks. Nil means
	// slog.Default().
	Logger *slog.Logger
}

func (o *DialOptions) withDefaults() DialOptions {
	var c DialOptions
	if o != nil {
		c = *o
	}
	if c.Transport == "" {
		c.Transport = Auto
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 45 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = 25 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 250 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.MaxFailures <= 0 {
		c.MaxFailures = 3
	}
	if c.StableAfter <= 0 {
		c.StableAfter = 10 * time.Second
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = 4 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Dial == nil {
		d := &net.Dialer{KeepAlive: 30 * time.Second}
		c.Dial = d.DialContext
	}
	c.Header = c.Header.Clone()
	return c
}

// ErrClosed is returned by calls on a closed Client or Subscription.
var ErrClosed = errors.New("client: closed")

// Client talks to one hub. It is safe for concurrent use. Call Close when
// done: it ends every Subscription and the WebSocket Publish uses.
type Client struct {
	base  *url.URL // http or https, no trailing slash in Path
	opts  DialOptions
	proxy *url.URL // nil: direct

	hc   *http.Client // request/response, SSE, stream, poll
	wshc *http.Client // WebSocket handshakes: tunnels through proxies
	auto *autoState   // nil unless Transport is Auto

	mu     sync.Mutex // guards cmd, subs, closed
	cmd    *wsCommander
	subs   map[*Subscription]struct{}
	closed bool
}

// Dial returns a Client for the hub at hubURL (http://, https://, ws:// or
// wss://; a path prefix is kept). It checks opts and picks the proxy. With
// the WebSocket transport it opens the WebSocket that Publish uses, so an
// unreachable hub is reported here; with Auto it tries that WebSocket and
// remembers a refusal (falling back to HTTP) without failing. The other
// transports make no request until used.
func Dial(ctx context.Context, hubURL string, opts *DialOptions) (*Client, error) {
	o := opts.withDefaults()
	if _, err := ParseTransport(string(o.Transport)); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	base, err := parseHubURL(hubURL)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c := &Client{base: base, opts: o, subs: make(map[*Subscription]struct{})}
	switch strings.ToLower(o.Proxy) {
	case "":
		c.proxy, err = envProxy(base)
		if err != nil {
			return nil, fmt.Errorf("client: proxy from environment: %w", err)
		}
	case "direct", "none":
	default:
		c.proxy, err = parseProxy(o.Proxy)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	c.hc, c.wshc = c.httpClients()
	if o.Transport == Auto {
		c.auto = &autoState{}
	}
	if o.Transport == WebSocket || o.Transport == Auto {
		cmd, err := c.dialCommander(ctx)
		switch {
		case err == nil:
			c.cmd = cmd
		case o.Transport == Auto && isUnsupported(err):
			c.auto.unsupported(WebSocket, c.opts.Logger, err)
		default:
			c.closeTransports()
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	return c, nil
}

func parseHubURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid hub URL %q: %v", raw, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "ws":
		u.Scheme = "http"
	case "https", "wss":
		u.Scheme = "https"
	default:
		return nil, fmt.Errorf("invalid hub URL %q: scheme must be http, https, ws or wss", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("invalid hub URL %q: no host", raw)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u, nil
}

// httpClients builds the two HTTP clients: one for ordinary requests (HTTP
// proxies forward them, SOCKS proxies tunnel them) and one for WebSocket
// handshakes, which always tunnel. Against an https hub the first offers
// HTTP/2, so SSE, NDJSON, polls and requests share one connection; the
// second offers only HTTP/1.1, the one WebSocket runs over (the hub does
// not do RFC 8441; docs/protocol.md, "TLS and HTTP/2").
func (c *Client) httpClients() (*http.Client, *http.Client) {
	mk := func(dial dialFunc, prox func(*http.Request) (*url.URL, error), h2 bool) *http.Client {
		tr := &http.Transport{
			Proxy:                 prox,
			DialContext:           dial,
			TLSClientConfig:       c.opts.TLSConfig.Clone(),
			TLSHandshakeTimeout:   c.opts.ConnectTimeout,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 0, // per request, by context
			ForceAttemptHTTP2:     h2,
		}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		return &http.Client{Transport: tr}
	}
	tunnel := tunnelDialer(c.proxy, c.opts.Dial, c.opts.TLSConfig)
	var plain *http.Client
	if c.proxy != nil && (c.proxy.Scheme == "http" || c.proxy.Scheme == "https") {
		plain = mk(c.opts.Dial, http.ProxyURL(c.proxy), true)
		// Some proxies (tinyproxy) close the client connection after each
		// forwarded response without saying so; a POST sent on such a
		// connection fails with EOF and must not be retried blindly (it
		// may have been published). So forwarded requests use a fresh
		// connection each.
		plain.Transport.(*http.Transport).DisableKeepAlives = true
	} else {
		plain = mk(tunnel, nil, true)
	}
	return plain, mk(tunnel, nil, false)
}

func (c *Client) closeTransports() {
	c.hc.CloseIdleConnections()
	c.wshc.CloseIdleConnections()
}

// URL returns the hub URL the client talks to.
func (c *Client) URL() string { return c.base.String() }

// Proxy returns the proxy the client uses, or "" for none. Credentials are
// redacted.
func (c *Client) Proxy() string {
	if c.proxy == nil {
		return ""
	}
	return c.proxy.Redacted()
}

// Transport returns the transport new subscriptions start with: the one
// chosen, or for Auto the one that works so far.
func (c *Client) Transport() Transport {
	if c.auto != nil {
		return c.auto.current()
	}
	return c.opts.Transport
}

// Close ends every subscription, closes the WebSocket Publish uses and
// waits for the client's goroutines. It is safe to call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	subs := make([]*Subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	cmd := c.cmd
	c.cmd = nil
	c.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
	if cmd != nil {
		cmd.close()
	}
	c.closeTransports()
	return nil
}

// endpoint returns the URL of path (which starts with /) under the hub URL.
func (c *Client) endpoint(path string, q url.Values) string {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawPath = ""
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// newRequest builds a request with the client's headers.
func (c *Client) newRequest(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	c.setHeaders(req.Header)
	return req, nil
}

func (c *Client) setHeaders(h http.Header) {
	for k, v := range c.opts.Header {
		h[k] = append([]string(nil), v...)
	}
	if c.opts.Token != "" {
		h.Set("Authorization", "Bearer "+c.opts.Token)
	}
	h.Set("User-Agent", "duplex-go-client")
}

// maxReplyBody bounds a request/response reply or a long-poll answer: a
// history page of 1000 messages at the hub's default 64 KiB fits, and so
// does what one hub session may queue (16 MiB by default).
func (c *Client) maxReplyBody() int64 { return max(64<<20, 16*int64(c.opts.MaxFrame)) }

// Publish publishes data (a JSON value) to channel and returns where it
// landed. Over the WebSocket transport (and Auto while WebSocket works) it
// is a publish command on the client's one WebSocket; otherwise it is
// POST /v1/channels/{channel}/messages. A publish that fails may or may
// not have happened: Publish does not retry.
func (c *Client) Publish(ctx context.Context, channel string, data json.RawMessage) (msg.Published, error) {
	if !msg.ValidChannel(channel) {
		return msg.Published{}, msg.Errorf(msg.CodeInvalidChannel, "invalid channel name %q", channel)
	}
	if !json.Valid(data) {
		return msg.Published{}, msg.Errorf(msg.CodeInvalidJSON, "data is not valid JSON")
	}
	if c.isClosed() {
		return msg.Published{}, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	if c.Transport() == WebSocket {
		cmd, err := c.commander(ctx)
		if err == nil {
			p, err := cmd.publish(ctx, channel, data)
			var me *msg.Error
			if err != nil && c.auto != nil && ctx.Err() == nil && !errors.As(err, &me) {
				// The WebSocket opened and then died: one more strike
				// against it for Auto, as for subscriptions.
				c.auto.failedAfterOpen(WebSocket, c.opts.MaxFailures, c.opts.Logger, err)
			}
			return p, err
		}
		if c.auto == nil || !isUnsupported(err) {
			return msg.Published{}, err
		}
		c.auto.unsupported(WebSocket, c.opts.Logger, err)
	}
	return c.publishHTTP(ctx, channel, data)
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *Client) publishHTTP(ctx context.Context, channel string, data json.RawMessage) (msg.Published, error) {
	req, err := c.newRequest(ctx, http.MethodPost, c.endpoint("/v1/channels/"+url.PathEscape(channel)+"/messages", nil), bytes.NewReader(data))
	if err != nil {
		return msg.Published{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	var p msg.Published
	if err := c.do(req, http.StatusCreated, &p); err != nil {
		return msg.Published{}, fmt.Errorf("publish: %w", err)
	}
	if p.Channel != channel || !msg.ValidEpoch(p.Epoch) || p.Offset == 0 {
		return msg.Published{}, fmt.Errorf("publish: %w: reply %+v does not describe a publication to %q", ErrProtocol, p, channel)
	}
	return p, nil
}

// History returns up to limit messages of channel after offset after.
// Over the WebSocket transport (and Auto while WebSocket works) it is a
// history command on the client's one WebSocket; otherwise it is
// GET /v1/channels/{channel}/messages, which proxies may cache. limit 0
// means the hub's default (100).
func (c *Client) History(ctx context.Context, channel string, after uint64, limit int) (*msg.History, error) {
	if !msg.ValidChannel(channel) {
		return nil, msg.Errorf(msg.CodeInvalidChannel, "invalid channel name %q", channel)
	}
	if c.isClosed() {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	var h *msg.History
	var err error
	if c.Transport() == WebSocket {
		var cmd *wsCommander
		if cmd, err = c.commander(ctx); err == nil {
			h, err = cmd.history(ctx, channel, after, limit)
		} else if c.auto != nil && isUnsupported(err) {
			c.auto.unsupported(WebSocket, c.opts.Logger, err)
		}
	}
	if h == nil && err == nil {
		h, err = c.historyHTTP(ctx, channel, after, limit)
	}
	if err != nil {
		return nil, err
	}
	for i := range h.Messages {
		if err := checkEnvelope(&h.Messages[i]); err != nil || h.Messages[i].Channel != channel {
			return nil, fmt.Errorf("history: %w: bad message in reply", ErrProtocol)
		}
	}
	return h, nil
}

func (c *Client) historyHTTP(ctx context.Context, channel string, after uint64, limit int) (*msg.History, error) {
	q := url.Values{"after": {strconv.FormatUint(after, 10)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	req, err := c.newRequest(ctx, http.MethodGet, c.endpoint("/v1/channels/"+url.PathEscape(channel)+"/messages", q), nil)
	if err != nil {
		return nil, err
	}
	var h msg.History
	if err := c.do(req, http.StatusOK, &h); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return &h, nil
}

// Info returns the state of channel (GET /v1/channels/{channel}).
func (c *Client) Info(ctx context.Context, channel string) (*msg.ChannelInfo, error) {
	if !msg.ValidChannel(channel) {
		return nil, msg.Errorf(msg.CodeInvalidChannel, "invalid channel name %q", channel)
	}
	if c.isClosed() {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodGet, c.endpoint("/v1/channels/"+url.PathEscape(channel), nil), nil)
	if err != nil {
		return nil, err
	}
	var info msg.ChannelInfo
	if err := c.do(req, http.StatusOK, &info); err != nil {
		return nil, fmt.Errorf("info: %w", err)
	}
	return &info, nil
}

// do sends req and decodes a JSON reply with status want into v.
func (c *Client) do(req *http.Request, want int, v any) error {
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return statusError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxReplyBody()+1))
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	if int64(len(body)) > c.maxReplyBody() {
		return fmt.Errorf("%w: reply longer than %d bytes", ErrProtocol, c.maxReplyBody())
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: decode reply: %v", ErrProtocol, err)
	}
	return nil
}
