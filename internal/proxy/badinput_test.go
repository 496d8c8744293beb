package proxy

import (
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// exchange sends in, half-closes, and returns everything the proxy
// answered before closing.
func exchange(t *testing.T, addr string, in string) string {
	t.Helper()
	c := dialProxy(t, addr)
	if _, err := io.WriteString(c, in); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read: %v (after %q)", err, out)
	}
	return string(out)
}

const (
	s5ok       = "\x05\x00"
	s5fail     = "\x05\x01\x00\x01\x00\x00\x00\x00\x00\x00"
	s5cmd      = "\x05\x07\x00\x01\x00\x00\x00\x00\x00\x00"
	s5atyp     = "\x05\x08\x00\x01\x00\x00\x00\x00\x00\x00"
	s4reject   = "\x00\x5b\x00\x00\x00\x00\x00\x00"
	s5loopback = "\x01\x7f\x00\x00\x01\x00\x50"
)

func TestBadSOCKS(t *testing.T) {
	checkLeaks(t)
	open := startProxy(t, Config{Allow: loopback, Dial: (&dialRecorder{}).dial})
	authed := startProxy(t, Config{Allow: loopback, Credentials: []Credential{{"u", "p"}}})
	long := strings.Repeat("A", 300)
	for _, tc := range []struct {
		name   string
		authed bool
		in     string
		want   string
	}{
		{"socks5 truncated greeting", false, "\x05", ""},
		{"socks5 zero methods", false, "\x05\x00", "\x05\xff"},
		{"socks5 unknown method only", false, "\x05\x01\x80", "\x05\xff"},
		{"socks5 greeting shorter than declared", false, "\x05\x02\x00", ""},
		{"socks5 oversized greeting", false, "\x05\x01\x00" + long, s5ok + s5fail},
		{"socks5 request version 4", false, "\x05\x01\x00\x04\x01\x00" + s5loopback, s5ok + s5fail},
		{"socks5 unknown command", false, "\x05\x01\x00\x05\x09\x00" + s5loopback, s5ok + s5cmd},
		{"socks5 BIND", false, "\x05\x01\x00\x05\x02\x00" + s5loopback, s5ok + s5cmd},
		{"socks5 unknown address type", false, "\x05\x01\x00\x05\x01\x00\x05\x7f\x00\x00\x01\x00\x50", s5ok + s5atyp},
		{"socks5 empty domain", false, "\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50", s5ok + s5fail},
		{"socks5 port 0", false, "\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00", s5ok + s5fail},
		{"socks5 truncated request", false, "\x05\x01\x00\x05\x01\x00\x01\x7f", s5ok},
		{"socks5 truncated domain", false, "\x05\x01\x00\x05\x01\x00\x03\x10abc", s5ok},
		{"socks5 no password method", true, "\x05\x01\x00", "\x05\xff"},
		{"socks5 bad auth version", true, "\x05\x01\x02\x02\x01u\x01p", "\x05\x02"},
		{"socks5 truncated auth", true, "\x05\x01\x02\x01\x05us", "\x05\x02"},
		{"socks5 wrong password", true, "\x05\x01\x02\x01\x01u\x01x", "\x05\x02\x01\x01"},
		{"socks5 empty user", true, "\x05\x01\x02\x01\x00\x01p", "\x05\x02\x01\x01"},
		{"socks4 truncated", false, "\x04\x01\x00", ""},
		{"socks4 user id without end", false, "\x04\x01\x00\x50\x7f\x00\x00\x01" + long, s4reject},
		{"socks4 BIND", false, "\x04\x02\x00\x50\x7f\x00\x00\x01u\x00", s4reject},
		{"socks4 unknown command", false, "\x04\x09\x00\x50\x7f\x00\x00\x01u\x00", s4reject},
		{"socks4 port 0", false, "\x04\x01\x00\x00\x7f\x00\x00\x01u\x00", s4reject},
		{"socks4a empty domain", false, "\x04\x01\x00\x50\x00\x00\x00\x01u\x00\x00", s4reject},
		{"socks4a domain too long", false, "\x04\x01\x00\x50\x00\x00\x00\x01u\x00" + long + "\x00", s4reject},
		{"socks4a truncated domain", false, "\x04\x01\x00\x50\x00\x00\x00\x01u\x00abc", ""},
		{"socks4 with auth on", true, "\x04\x01\x00\x50\x7f\x00\x00\x01u\x00", s4reject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := open.addr
			if tc.authed {
				addr = authed.addr
			}
			if got := exchange(t, addr, tc.in); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBadHTTP(t *testing.T) {
	checkLeaks(t)
	p := startProxy(t, Config{Allow: loopback, Dial: (&dialRecorder{}).dial})
	const get = "GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	for _, tc := range []struct {
		name string
		in   string
		want string // status line prefix
	}{
		{"garbage", "GARBAGE\r\n\r\n", "HTTP/1.1 400"},
		{"method only", "GET\r\n\r\n", "HTTP/1.1 400"},
		{"binary", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "HTTP/1.1 400"},
		{"only empty lines", "\r\n\r\n\r\n\r\n", "HTTP/1.1 400"},
		{"double space", "GET  http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"CL and TE", get + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 400"},
		{"TE and CL", get + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "HTTP/1.1 400"},
		{"duplicate CL equal", get + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "HTTP/1.1 400"},
		{"duplicate CL differ", get + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "HTTP/1.1 400"},
		{"CL list", get + "Content-Length: 5, 5\r\n\r\nhello", "HTTP/1.1 400"},
		{"CL plus sign", get + "Content-Length: +5\r\n\r\nhello", "HTTP/1.1 400"},
		{"CL negative", get + "Content-Length: -1\r\n\r\n", "HTTP/1.1 400"},
		{"CL hex", get + "Content-Length: 0x5\r\n\r\n", "HTTP/1.1 400"},
		{"CL huge", get + "Content-Length: 99999999999999999999\r\n\r\n", "HTTP/1.1 400"},
		{"TE list", get + "Transfer-Encoding: gzip, chunked\r\n\r\n", "HTTP/1.1 400"},
		{"TE chunked twice", get + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 400"},
		{"TE xchunked", get + "Transfer-Encoding: xchunked\r\n\r\n", "HTTP/1.1 400"},
		{"TE identity", get + "Transfer-Encoding: identity\r\n\r\n", "HTTP/1.1 400"},
		{"TE in HTTP/1.0", "GET http://127.0.0.1/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 400"},
		{"obs-fold", get + "X-A: 1\r\n continued\r\n\r\n", "HTTP/1.1 400"},
		{"obs-fold TE", get + "Transfer-Encoding:\r\n chunked\r\n\r\n", "HTTP/1.1 400"},
		{"space before colon", get + "Content-Length : 5\r\n\r\nhello", "HTTP/1.1 400"},
		{"space in name", get + "Bad Name: x\r\n\r\n", "HTTP/1.1 400"},
		{"no colon", get + "NoColon\r\n\r\n", "HTTP/1.1 400"},
		{"empty name", get + ": x\r\n\r\n", "HTTP/1.1 400"},
		{"bare LF", "GET http://127.0.0.1/ HTTP/1.1\nHost: x\n\n", "HTTP/1.1 400"},
		{"bare CR", get + "X-A: a\rb\r\n\r\n", "HTTP/1.1 400"},
		{"NUL in value", get + "X-A: a\x00b\r\n\r\n", "HTTP/1.1 400"},
		{"huge header", get + "X-Big: " + strings.Repeat("a", 40<<10) + "\r\n\r\n", "HTTP/1.1 431"},
		{"many headers", get + strings.Repeat("X-A: 1234567890\r\n", 4000) + "\r\n", "HTTP/1.1 431"},
		{"huge request line", "GET http://127.0.0.1/" + strings.Repeat("a", 40<<10) + " HTTP/1.1\r\n\r\n", "HTTP/1.1 431"},
		{"HTTP/2.0", "GET http://127.0.0.1/ HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505"},
		{"HTTP/1.1x", "GET http://127.0.0.1/ HTTP/1.1x\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"lowercase version", "GET http://127.0.0.1/ http/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"origin-form", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"https absolute", "GET https://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"ftp absolute", "GET ftp://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"no Host in 1.1", "GET http://127.0.0.1/ HTTP/1.1\r\n\r\n", "HTTP/1.1 400"},
		{"two Hosts", get + "Host: evil\r\n\r\n", "HTTP/1.1 400"},
		{"bad port", "GET http://127.0.0.1:99999/ HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"CONNECT no port", "CONNECT 127.0.0.1 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"CONNECT port 0", "CONNECT 127.0.0.1:0 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"CONNECT port too big", "CONNECT 127.0.0.1:70000 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"CONNECT URL", "CONNECT http://127.0.0.1:80/ HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"control char in target", "GET http://127.0.0.1/\x01 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
		{"bad method", "G(T http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := exchange(t, p.addr, tc.in)
			if !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got %q, want %q...", got, tc.want)
			}
		})
	}
}

// TestSilentClients: a client that opens 1,000 connections and sends
// nothing has every one of them closed by the handshake deadline; memory
// stays bounded meanwhile, and nothing leaks.
func TestSilentClients(t *testing.T) {
	checkLeaks(t)
	const n = 1000
	p := startProxy(t, Config{Allow: loopback, HandshakeTimeout: time.Second, MaxConnsPerClient: -1})
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.metrics.accepted.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling interval
	}
	runtime.ReadMemStats(&ms1)
	perConn := (int64(ms1.HeapInuse+ms1.StackInuse) - int64(ms0.HeapInuse+ms0.StackInuse)) / n
	t.Logf("%d silent connections: %d bytes each (heap+stack, both ends)", n, perConn)
	if perConn > 64<<10 {
		t.Errorf("%d bytes per silent connection", perConn)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || len(b) != 0 {
			t.Fatalf("conn %d: read %q, %v; want EOF from the handshake deadline", i, b, err)
		}
	}
	waitIdle(t, p)
	var sb strings.Builder
	p.WriteMetrics(&sb)
	if !strings.Contains(sb.String(), `duplex_proxy_requests_total{outcome="handshake_timeout",proto="unknown"} 1000`) {
		t.Errorf("metrics:\n%s", sb.String())
	}
}

// TestSlowloris: a client trickling a request head, a line every 20ms,
// is cut at the handshake deadline however long it keeps trickling.
func TestSlowloris(t *testing.T) {
	checkLeaks(t)
	p := startProxy(t, Config{Allow: loopback, HandshakeTimeout: 200 * time.Millisecond})
	c := dialProxy(t, p.addr)
	io.WriteString(c, "GET http://127.0.0.1/ HTTP/1.1\r\n")
	done := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := io.WriteString(c, "X: y\r\n"); err != nil {
					return
				}
			}
		}
	}()
	b, err := io.ReadAll(c) // ends when the proxy closes; the conn deadline bounds the test
	close(done)
	<-wrote
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read %q: %v", b, err)
	}
	if len(b) != 0 {
		t.Fatalf("got %q", b)
	}
}

// TestRefusalFlood: past maxRefusing refused connections being answered,
// one more is closed without an answer, and still counted.
func TestRefusalFlood(t *testing.T) {
	checkLeaks(t)
	p := startProxy(t, Config{Allow: loopback, MaxConnsPerClient: 1})
	dialProxy(t, p.addr)
	for range maxRefusing {
		dialProxy(t, p.addr) // refused, sends nothing: waits to be answered
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.metrics.refused[refuseMaxConnsPerClient].Load() < maxRefusing && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	c := dialProxy(t, p.addr)
	c.Write([]byte("GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n"))
	got, _ := io.ReadAll(c)
	if len(got) != 0 {
		t.Fatalf("connection past maxRefusing: %q, want closed unanswered", got)
	}
	if n := p.metrics.refused[refuseMaxConnsPerClient].Load(); n != maxRefusing+1 {
		t.Fatalf("refused %d, want %d", n, maxRefusing+1)
	}
}
