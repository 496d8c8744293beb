package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/leaktest"
)

// loopback is the allow list tests use: their origins live on 127.0.0.1.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// testResolver maps test names to addresses; other names fail.
type testResolver struct {
	mu    sync.Mutex
	names map[string][]netip.Addr
	calls map[string]int
}

func newResolver(pairs ...string) *testResolver {
	r := &testResolver{names: map[string][]netip.Addr{}, calls: map[string]int{}}
	for i := 0; i+1 < len(pairs); i += 2 {
		r.set(pairs[i], netip.MustParseAddr(pairs[i+1]))
	}
	return r
}

func (r *testResolver) set(name string, a ...netip.Addr) {
	r.mu.Lock()
	r.names[name] = a
	r.mu.Unlock()
}

func (r *testResolver) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[host]++
	if a, ok := r.names[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (r *testResolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[host]
}

// logBuffer collects access-log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testProxy is a proxy server running for one test.
type testProxy struct {
	*Server
	addr string
	log  *logBuffer
}

// startProxy starts a proxy on 127.0.0.1:0 and shuts it down (checking
// that it stops cleanly) when the test ends. A nil LookupNetIP gets a
// resolver that knows "origin.test" → 127.0.0.1.
func startProxy(t testing.TB, cfg Config) *testProxy {
	t.Helper()
	lb := &logBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(lb, nil))
	}
	if cfg.LookupNetIP == nil {
		cfg.LookupNetIP = newResolver("origin.test", "127.0.0.1").lookup
	}
	if cfg.ListenUDP == nil {
		cfg.ListenUDP = func(network string, laddr *net.UDPAddr) (*net.UDPConn, error) {
			if laddr == nil {
				laddr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
			}
			return net.ListenUDP(network, laddr)
		}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-errc; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return &testProxy{Server: s, addr: ln.Addr().String(), log: lb}
}

// goroutine leak check.

// checkLeaks fails the test if goroutines started during it are still
// running when it ends (after its other cleanups). A stack that runs proxy
// code is a leak whatever else it holds. Call it first in a test, so its
// cleanup runs last.
func checkLeaks(t testing.TB) {
	t.Helper()
	leaktest.Check(t, &leaktest.Options{Never: []string{"internal/proxy.(*"}, Grace: 10 * time.Second})
}

// origin servers.

// newOrigin starts an HTTP origin on 127.0.0.1:0 that answers "hello
// <path>" and echoes the request headers as X-Echo-* response headers.
func newOrigin(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range r.Header {
			w.Header()["X-Echo-"+k] = v
		}
		w.Header().Set("X-Remote", r.RemoteAddr)
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// rawOrigin accepts TCP connections on 127.0.0.1:0 and hands each to fn in
// a goroutine it waits for on cleanup.
func rawOrigin(t testing.TB, fn func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); fn(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// echoOrigin echoes bytes and passes the half-close back.
func echoOrigin(t testing.TB) string {
	return rawOrigin(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// dialProxy connects to the proxy with a deadline that bounds the test.
func dialProxy(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// Raw protocol clients, so tests can check exact reply codes.

// socks5Connect runs a no-auth SOCKS5 CONNECT and returns the reply code.
func socks5Dial(t testing.TB, proxyAddr string, atyp byte, host string, port uint16) (net.Conn, byte) {
	t.Helper()
	c := dialProxy(t, proxyAddr)
	c.Write([]byte{5, 1, 0})
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b != [2]byte{5, 0} {
		t.Fatalf("greeting: %v %v", b, err)
	}
	req := []byte{5, 1, 0, atyp}
	switch atyp {
	case atypIPv4:
		a := netip.MustParseAddr(host).As4()
		req = append(req, a[:]...)
	case atypIPv6:
		a := netip.MustParseAddr(host).As16()
		req = append(req, a[:]...)
	default:
		req = append(req, byte(len(host)))
		req = append(req, host...)
	}
	req = binary.BigEndian.AppendUint16(req, port)
	c.Write(req)
	rep, err := readSOCKS5Reply(c)
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	return c, rep
}

func readSOCKS5Reply(r io.Reader) (byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	n := 0
	switch h[3] {
	case 1:
		n = 4
	case 4:
		n = 16
	default:
		return 0, fmt.Errorf("reply atyp %d", h[3])
	}
	if _, err := io.ReadFull(r, make([]byte, n+2)); err != nil {
		return 0, err
	}
	return h[1], nil
}

// socks4Dial runs a SOCKS4 (or 4a, when host is not an IPv4 literal)
// CONNECT and returns the reply code.
func socks4Dial(t testing.TB, proxyAddr, host string, port uint16) (net.Conn, byte) {
	t.Helper()
	c := dialProxy(t, proxyAddr)
	req := []byte{4, 1}
	req = binary.BigEndian.AppendUint16(req, port)
	if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		b := a.As4()
		req = append(req, b[:]...)
		req = append(req, "user\x00"...)
	} else {
		req = append(req, 0, 0, 0, 1)
		req = append(req, "user\x00"...)
		req = append(req, host+"\x00"...)
	}
	c.Write(req)
	var rep [8]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatalf("socks4 reply: %v", err)
	}
	return c, rep[1]
}

// httpConnect sends CONNECT and returns the status code.
func httpConnectDial(t testing.TB, proxyAddr, hostport string) (net.Conn, int) {
	t.Helper()
	c := dialProxy(t, proxyAddr)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", hostport, hostport)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil {
		t.Fatalf("CONNECT response: %v", err)
	}
	if resp.StatusCode == 200 && br.Buffered() > 0 {
		t.Fatalf("bytes after CONNECT response")
	}
	return c, resp.StatusCode
}

// httpGet sends one absolute-form GET through the proxy on a new
// connection and returns the status code.
func httpForward(t testing.TB, proxyAddr, url string) int {
	t.Helper()
	c := dialProxy(t, proxyAddr)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", url)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("forward response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
