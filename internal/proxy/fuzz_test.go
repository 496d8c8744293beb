package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// Seeds are real bytes: curl's and PySocks' greetings and requests, and
// requests from curl and net/http. More live in testdata/fuzz/<Name>/.

func FuzzSOCKS4Request(f *testing.F) {
	f.Add([]byte("\x01\x00\x50\x7f\x00\x00\x01\x00"))                // curl socks4://
	f.Add([]byte("\x01\x00\x50\x00\x00\x00\x01\x00origin.test\x00")) // curl socks4a://
	f.Add([]byte("\x02\x00\x50\x7f\x00\x00\x01user\x00"))            // BIND
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := readSOCKS4(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if len(r.user) > 255 || len(r.domain) > 255 || r.port == 0 {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func FuzzSOCKS5(f *testing.F) {
	// After the version byte: methods, then a request.
	f.Add([]byte("\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90"))                               // curl socks5://
	f.Add([]byte("\x02\x00\x02\x05\x01\x00\x03\x0borigin.test\x1f\x90"))                            // curl socks5h://
	f.Add([]byte("\x01\x02\x01\x01u\x01p\x05\x01\x00\x04" + string(make([]byte, 16)) + "\x00\x50")) // auth, IPv6
	f.Add([]byte("\x01\x00\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00"))                               // UDP ASSOCIATE
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		m, err := readSOCKS5Methods(br)
		if err != nil {
			return
		}
		if len(m) == 0 || len(m) > 255 {
			t.Fatalf("methods %v", m)
		}
		for _, x := range m {
			if x == methodPassword {
				if _, _, err := readSOCKS5Auth(br); err != nil {
					return
				}
				break
			}
		}
		r, err := readSOCKS5Request(br)
		if err != nil {
			return
		}
		if r.dst.host == "" || len(r.dst.host) > 255 {
			t.Fatalf("request %+v", r)
		}
	})
}

func FuzzHTTPRequestHead(f *testing.F) {
	f.Add([]byte("GET http://origin.test:8080/path HTTP/1.1\r\nHost: origin.test:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n\r\n"))
	f.Add([]byte("CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\nUser-Agent: curl/7.88.1\r\nProxy-Connection: Keep-Alive\r\n\r\n"))
	f.Add([]byte("POST http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readRequestHead(bufio.NewReaderSize(bytes.NewReader(b), 64), 4096)
		if err != nil {
			return
		}
		if h.chunked && h.contentLength >= 0 {
			t.Fatal("both chunked and a length")
		}
		if len(h.header["Content-Length"]) > 1 || len(h.header["Host"]) > 1 {
			t.Fatalf("ambiguous head accepted: %v", h.header)
		}
		for k, vs := range h.header {
			for _, v := range vs {
				if bytes.ContainsAny([]byte(k+v), "\r\n\x00") {
					t.Fatalf("control bytes accepted in %q: %q", k, v)
				}
			}
		}
		if h.method == "CONNECT" {
			parseTarget(h.target)
		} else {
			forwardTarget(h)
		}
	})
}

func FuzzUDPHeader(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x01\x7f\x00\x00\x01\x00\x35payload"))
	f.Add([]byte("\x00\x00\x00\x03\x0borigin.test\x00\x35payload"))
	f.Add([]byte("\x00\x00\x00\x04" + string(make([]byte, 16)) + "\x00\x35"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dst, payload, err := parseUDPHeader(b)
		if err != nil {
			return
		}
		if dst.port == 0 || dst.host == "" || len(payload) > len(b) {
			t.Fatalf("parsed %+v", dst)
		}
	})
}

func FuzzACL(f *testing.F) {
	f.Add([]byte(netip.MustParseAddr("::ffff:127.0.0.1").AsSlice()))
	f.Add([]byte(netip.MustParseAddr("2002:7f00:1::").AsSlice()))
	f.Add([]byte{8, 8, 8, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		l := &acl{}
		if l.allowed(a) {
			u := a.Unmap()
			if u.IsLoopback() || u.IsPrivate() || u.IsLinkLocalUnicast() || u.IsMulticast() || u.IsUnspecified() {
				t.Fatalf("%v allowed", a)
			}
			for _, e := range embeddedIPv4(u) {
				if e.IsLoopback() || e.IsPrivate() || e.IsLinkLocalUnicast() {
					t.Fatalf("%v embeds %v and was allowed", a, e)
				}
			}
		}
	})
}

// FuzzServeConn feeds whole client byte streams to a server connection
// over net.Pipe: whatever the protocol the first byte picks, no panic,
// no hang past the handshake deadline. Dials are refused by a hook.
func FuzzServeConn(f *testing.F) {
	f.Add([]byte("\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90"))
	f.Add([]byte("\x04\x01\x00\x50\x00\x00\x00\x01\x00origin.test\x00"))
	f.Add([]byte("GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n\r\n"))
	f.Add([]byte("CONNECT origin.test:80 HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("\x05\x01\x00\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00"))
	// Only username/password offered, to a proxy without credentials: 0xFF.
	f.Add([]byte("\x05\x01\x02\x01\x01u\x01p\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90"))
	s, err := New(Config{
		HandshakeTimeout: time.Second,
		IdleTimeout:      time.Second,
		Logger:           discardLogger(),
		LookupNetIP:      newResolver("origin.test", "127.0.0.1").lookup,
		Dial:             (&dialRecorder{}).dial,
		AllowPrivate:     true,
		ListenUDP: func(network string, _ *net.UDPAddr) (*net.UDPConn, error) {
			return nil, net.ErrClosed // no sockets from the fuzzer
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cli, srv := net.Pipe()
		c := &conn{nc: pipeConn{srv}}
		c.state.Store(stateHandshake)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.perClient[c.ip]++
		s.mu.Unlock()
		s.metrics.open.Add(1)
		done := make(chan struct{})
		go func() { defer close(done); s.serveConn(c) }()
		go io.Copy(io.Discard, cli)
		cli.Write(b)
		cli.Close()
		<-done
	})
}

// pipeConn gives a net.Pipe end TCP-looking addresses.
type pipeConn struct{ net.Conn }

func (pipeConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (pipeConn) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }
