package check

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Protocols, in the order they are probed.
const (
	ProtoHTTP    = "http"    // absolute-form forwarding
	ProtoConnect = "connect" // HTTP CONNECT tunnel
	ProtoSOCKS4  = "socks4"
	ProtoSOCKS4a = "socks4a" // the proxy resolves the name
	ProtoSOCKS5  = "socks5"  // the client resolves the name
	ProtoSOCKS5h = "socks5h" // the proxy resolves the name
)

// Protocols lists every protocol Check probes.
var Protocols = []string{ProtoHTTP, ProtoConnect, ProtoSOCKS4, ProtoSOCKS4a, ProtoSOCKS5, ProtoSOCKS5h}

// Transports, probed through each protocol.
const (
	TransportHTTP      = "http"      // GET, request/response
	TransportWebSocket = "websocket" // upgrade plus one echoed message
)

// Config configures Check.
type Config struct {
	// Judge is the http:// URL probed through the proxy, e.g. a duplex
	// hub's http://host:8080/v1/echo. Required.
	Judge *url.URL
	// Timeout bounds each probe. Zero means 10s.
	Timeout time.Duration
	// Dial connects to the proxy. Nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// LookupNetIP resolves the judge's host for the protocols that need
	// an address (socks4, socks5). Nil means net.DefaultResolver.
	LookupNetIP func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Probe is the outcome of one protocol and transport through a proxy.
type Probe struct {
	Protocol  string        `json:"protocol"`
	Transport string        `json:"transport"`
	OK        bool          `json:"ok"`
	Error     string        `json:"error,omitempty"`
	Setup     time.Duration `json:"setup_ns,omitempty"` // connect + proxy handshake
	Total     time.Duration `json:"total_ns,omitempty"` // until the judge's answer
	// Anonymity is set for the HTTP forward path: "elite" (the judge saw
	// no proxy headers), "anonymous" (Via or similar, no client address)
	// or "transparent" (X-Forwarded-For, Forwarded, X-Real-IP...).
	Anonymity string `json:"anonymity,omitempty"`
}

// Result is what Check found out about one proxy.
type Result struct {
	Proxy  string  `json:"proxy"` // host:port, credentials redacted
	Probes []Probe `json:"probes"`
}

// Works reports whether any probe of protocol p succeeded.
func (r Result) Works(p string) bool {
	for _, pr := range r.Probes {
		if pr.Protocol == p && pr.OK {
			return true
		}
	}
	return false
}

// ParseProxy accepts "host:port" or "scheme://[user:pass@]host:port"; the
// scheme only documents, every protocol is probed either way, and the
// credentials are used where the protocol can carry them.
func ParseProxy(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "proxy://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, fmt.Errorf("proxy %q: want host:port", s)
	}
	return u, nil
}

// Check probes the proxy at u with every protocol and transport. It
// returns when all probes are done or ctx ends.
func Check(ctx context.Context, cfg Config, u *url.URL) Result {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	if cfg.LookupNetIP == nil {
		cfg.LookupNetIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
		}
	}
	// Probes run concurrently: a proxy that does not speak a protocol
	// often just waits, and each such probe costs a whole Timeout.
	res := Result{Proxy: u.Host}
	transports := []string{TransportHTTP, TransportWebSocket}
	res.Probes = make([]Probe, len(Protocols)*len(transports))
	var wg sync.WaitGroup
	for i, p := range Protocols {
		for j, tr := range transports {
			wg.Go(func() {
				pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				defer cancel()
				res.Probes[i*len(transports)+j] = probe(pctx, cfg, u, p, tr)
			})
		}
	}
	wg.Wait()
	return res
}

func probe(ctx context.Context, cfg Config, u *url.URL, proto, transport string) Probe {
	pr := Probe{Protocol: proto, Transport: transport}
	start := time.Now()
	c, err := cfg.Dial(ctx, "tcp", u.Host)
	if err != nil {
		pr.Error = fmt.Sprintf("dial proxy: %v", err)
		return pr
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	judge := cfg.Judge
	host := judge.Hostname()
	port := judge.Port()
	if port == "" {
		port = "80"
	}
	pn, _ := strconv.Atoi(port)
	forward := proto == ProtoHTTP
	var br *bufio.Reader
	if !forward {
		if proto == ProtoSOCKS4 || proto == ProtoSOCKS5 {
			ip, err := lookup4(ctx, cfg, host)
			if err != nil {
				pr.Error = err.Error()
				return pr
			}
			host = ip.String()
		}
		if br, err = handshake(c, u, proto, host, uint16(pn)); err != nil {
			pr.Error = err.Error()
			return pr
		}
	}
	pr.Setup = time.Since(start)
	if br == nil {
		br = bufio.NewReader(c)
	}

	target := judge.RequestURI()
	if forward {
		target = judge.String()
	}
	var auth string
	if forward && u.User != nil {
		p, _ := u.User.Password()
		auth = "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+p)) + "\r\n"
	}
	switch transport {
	case TransportHTTP:
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n%sUser-Agent: duplex-proxy-check\r\nConnection: close\r\n\r\n", target, judge.Host, auth)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			pr.Error = fmt.Sprintf("read answer: %v", err)
			return pr
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			pr.Error = "judge answered " + resp.Status
			return pr
		}
		var echo struct {
			Headers map[string][]string `json:"headers"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&echo); err != nil {
			pr.Error = fmt.Sprintf("judge answer: %v", err)
			return pr
		}
		if forward {
			pr.Anonymity = anonymity(echo.Headers)
		}
	case TransportWebSocket:
		if err := wsEcho(c, br, target, judge.Host, auth); err != nil {
			pr.Error = err.Error()
			return pr
		}
	}
	pr.Total = time.Since(start)
	pr.OK = true
	return pr
}

func lookup4(ctx context.Context, cfg Config, host string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, nil
	}
	as, err := cfg.LookupNetIP(ctx, host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve judge: %w", err)
	}
	for _, a := range as {
		if a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, errors.New("judge has no IPv4 address")
}

// anonymity classifies the request headers the judge saw.
func anonymity(h map[string][]string) string {
	get := func(k string) bool {
		for hk := range h {
			if strings.EqualFold(hk, k) {
				return true
			}
		}
		return false
	}
	for _, k := range []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip", "Client-Ip", "True-Client-Ip", "X-Client-Ip", "Forwarded-For"} {
		if get(k) {
			return "transparent"
		}
	}
	for _, k := range []string{"Via", "Proxy-Connection", "X-Proxy-Id", "X-Bluecoat-Via"} {
		if get(k) {
			return "anonymous"
		}
	}
	return "elite"
}

// handshake opens a tunnel to host:port through the proxy on c.
func handshake(c net.Conn, u *url.URL, proto, host string, port uint16) (*bufio.Reader, error) {
	user, pass := "", ""
	if u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	hp := net.JoinHostPort(host, strconv.Itoa(int(port)))
	switch proto {
	case ProtoConnect:
		auth := ""
		if user != "" {
			auth = "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + "\r\n"
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", hp, hp, auth)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			return nil, fmt.Errorf("CONNECT: %w", err)
		}
		if resp.StatusCode/100 != 2 {
			return nil, fmt.Errorf("CONNECT answered %s", resp.Status)
		}
		return br, nil
	case ProtoSOCKS4, ProtoSOCKS4a:
		req := binary.BigEndian.AppendUint16([]byte{4, 1}, port)
		if proto == ProtoSOCKS4 {
			a := netip.MustParseAddr(host).As4()
			req = append(req, a[:]...)
			req = append(append(req, user...), 0)
		} else {
			req = append(req, 0, 0, 0, 1)
			req = append(append(req, user...), 0)
			req = append(append(req, host...), 0)
		}
		if _, err := c.Write(req); err != nil {
			return nil, err
		}
		var rep [8]byte
		if _, err := io.ReadFull(c, rep[:]); err != nil {
			return nil, fmt.Errorf("%s reply: %w", proto, err)
		}
		if rep[1] != 0x5A {
			return nil, fmt.Errorf("%s refused (%#x)", proto, rep[1])
		}
		return nil, nil
	case ProtoSOCKS5, ProtoSOCKS5h:
		methods := []byte{5, 1, 0}
		if user != "" {
			methods = []byte{5, 2, 0, 2}
		}
		if _, err := c.Write(methods); err != nil {
			return nil, err
		}
		var b [2]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return nil, fmt.Errorf("socks5 method: %w", err)
		}
		switch b[1] {
		case 0:
		case 2:
			if user == "" || len(user) > 255 || len(pass) > 255 {
				return nil, errors.New("socks5 wants a password")
			}
			m := append([]byte{1, byte(len(user))}, user...)
			m = append(append(m, byte(len(pass))), pass...)
			if _, err := c.Write(m); err != nil {
				return nil, err
			}
			if _, err := io.ReadFull(c, b[:]); err != nil || b[1] != 0 {
				return nil, fmt.Errorf("socks5 auth refused (%v)", err)
			}
		default:
			return nil, fmt.Errorf("socks5: no acceptable method (%#x)", b[1])
		}
		req := []byte{5, 1, 0}
		if proto == ProtoSOCKS5 {
			a := netip.MustParseAddr(host).As4()
			req = append(append(req, 1), a[:]...)
		} else {
			req = append(append(req, 3, byte(len(host))), host...)
		}
		req = binary.BigEndian.AppendUint16(req, port)
		if _, err := c.Write(req); err != nil {
			return nil, err
		}
		var h [4]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return nil, fmt.Errorf("socks5 reply: %w", err)
		}
		if h[1] != 0 {
			return nil, fmt.Errorf("socks5 refused (%#x)", h[1])
		}
		skip := 0
		switch h[3] {
		case 1:
			skip = 4 + 2
		case 4:
			skip = 16 + 2
		case 3:
			var l [1]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				return nil, err
			}
			skip = int(l[0]) + 2
		default:
			return nil, fmt.Errorf("socks5 reply address type %d", h[3])
		}
		if _, err := io.ReadFull(c, make([]byte, skip)); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return nil, fmt.Errorf("unknown protocol %q", proto)
}

// wsEcho upgrades to WebSocket at target and checks that one masked text
// message comes back.
func wsEcho(c net.Conn, br *bufio.Reader, target, host, auth string) error {
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n%sUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nUser-Agent: duplex-proxy-check\r\n\r\n", target, host, auth, key)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return fmt.Errorf("websocket upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("websocket upgrade answered %s", resp.Status)
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		return errors.New("websocket: wrong Sec-WebSocket-Accept")
	}
	const text = "duplex-proxy-check"
	var mask [4]byte
	rand.Read(mask[:])
	frame := []byte{0x81, 0x80 | byte(len(text))}
	frame = append(frame, mask[:]...)
	for i := range len(text) {
		frame = append(frame, text[i]^mask[i%4])
	}
	if _, err := c.Write(frame); err != nil {
		return fmt.Errorf("websocket write: %w", err)
	}
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return fmt.Errorf("websocket read: %w", err)
	}
	n := int(h[1] & 0x7f)
	if h[0]&0x0f != 1 || h[1]&0x80 != 0 || n != len(text) {
		return fmt.Errorf("websocket: unexpected frame %#x %#x", h[0], h[1])
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(br, got); err != nil {
		return fmt.Errorf("websocket read: %w", err)
	}
	if string(got) != text {
		return fmt.Errorf("websocket echo %q", got)
	}
	return nil
}
