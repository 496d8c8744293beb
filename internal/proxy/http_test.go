package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func proxyClient(t *testing.T, addr string) *http.Client {
	pu, _ := url.Parse("http://" + addr)
	tr := &http.Transport{Proxy: http.ProxyURL(pu), DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// TestStreamingNotBuffered: an event stream whose origin flushes one line
// and then waits for the test arrives line by line. If the proxy buffered,
// the first line would never arrive while the origin waits, and the read
// would hit the test's deadline.
func TestStreamingNotBuffered(t *testing.T) {
	checkLeaks(t)
	next := make(chan struct{})
	origin := httpOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	p := startProxy(t, Config{Allow: loopback})
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} {
		t.Run(proto, func(t *testing.T) {
			c := dialProxy(t, p.addr)
			fmt.Fprintf(c, "GET %s/events %s\r\nHost: x\r\n\r\n", origin, proto)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if proto == "HTTP/1.1" && (len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked") {
				t.Errorf("want chunked to an HTTP/1.1 client, got %v", resp.TransferEncoding)
			}
			lines := bufio.NewReader(resp.Body)
			for i := range 3 {
				line, err := lines.ReadString('\n')
				if err != nil {
					t.Fatalf("line %d: %v", i, err)
				}
				if want := fmt.Sprintf("data: %d\n", i); line != want {
					t.Fatalf("line %d = %q, want %q", i, line, want)
				}
				lines.ReadString('\n')
				next <- struct{}{}
			}
			resp.Body.Close()
		})
	}
}

// httpOrigin starts an origin with handler h and returns its URL.
func httpOrigin(t *testing.T, h http.HandlerFunc) string {
	srv := newOriginHandler(t, h)
	return srv
}

func newOriginHandler(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	o := newOrigin(t)
	o.Config.Handler = h
	return o.URL
}

// TestLongPollNotCut: the proxy has no response-header timeout. Config has
// no such field; the wait for a response header is bounded only by
// IdleTimeout (default 5m). Here every other timeout is set far shorter
// than the origin's delay, and the answer still arrives.
func TestLongPollNotCut(t *testing.T) {
	checkLeaks(t)
	const delay = time.Second
	origin := httpOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(delay): // the behaviour under test: a slow answer
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, `{"messages":[]}`)
	})
	p := startProxy(t, Config{
		Allow:            loopback,
		HandshakeTimeout: 250 * time.Millisecond,
		DialTimeout:      500 * time.Millisecond,
		IdleTimeout:      10 * delay, // the only bound on waiting for a header
	})
	resp, err := proxyClient(t, p.addr).Get(origin + "/v1/poll")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `{"messages":[]}` {
		t.Fatalf("body %q", b)
	}
	// The same through a CONNECT tunnel.
	c, code := httpConnectDial(t, p.addr, strings.TrimPrefix(origin, "http://"))
	if code != 200 {
		t.Fatalf("CONNECT %d", code)
	}
	fmt.Fprintf(c, "GET /v1/poll HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if string(b) != `{"messages":[]}` {
		t.Fatalf("body %q", b)
	}
}

// wsOrigin is a minimal WebSocket-ish origin: it reads a request head,
// sends the answer the test gives, and after a 101 echoes raw bytes. It
// reports everything it read after the head on got.
func wsOrigin(t *testing.T, answer string, got chan<- string) string {
	return rawOrigin(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			got <- "bad request: " + err.Error()
			return
		}
		if req.Header.Get("Upgrade") != "websocket" || req.Header.Get("Connection") != "Upgrade" ||
			req.Header.Get("Sec-Websocket-Key") == "" {
			got <- fmt.Sprintf("bad upgrade headers: %v", req.Header)
			return
		}
		io.WriteString(c, answer)
		if strings.Contains(answer, " 101 ") {
			io.Copy(c, br)
			got <- "echoed"
			return
		}
		rest, _ := io.ReadAll(br)
		got <- "after non-101: " + string(rest)
	})
}

func TestWebSocketUpgrade(t *testing.T) {
	checkLeaks(t)
	p := startProxy(t, Config{Allow: loopback})
	const upgradeReq = "GET http://%s/v1/ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\n" +
		"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

	t.Run("101 switches to a tunnel", func(t *testing.T) {
		got := make(chan string, 1)
		o := wsOrigin(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", got)
		c := dialProxy(t, p.addr)
		// The frame bytes go right behind the request: the proxy must hold
		// them until the origin has said 101.
		fmt.Fprintf(c, upgradeReq+"\x81\x05hello", o, o)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" {
			t.Fatalf("got %s %v", resp.Status, resp.Header)
		}
		echo := make([]byte, 7)
		if _, err := io.ReadFull(br, echo); err != nil || string(echo) != "\x81\x05hello" {
			t.Fatalf("echo %q %v", echo, err)
		}
		io.WriteString(c, "more")
		if _, err := io.ReadFull(br, echo[:4]); err != nil || string(echo[:4]) != "more" {
			t.Fatalf("echo %q %v", echo[:4], err)
		}
		c.(*net.TCPConn).CloseWrite()
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("want EOF after half-close, got %v", err)
		}
		if g := <-got; g != "echoed" {
			t.Fatal(g)
		}
	})

	t.Run("non-101 is a normal response", func(t *testing.T) {
		got := make(chan string, 1)
		o := wsOrigin(t, "HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!", got)
		c := dialProxy(t, p.addr)
		fmt.Fprintf(c, upgradeReq+"\x81\x05hello", o, o)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 403 || string(body) != "no!" {
			t.Fatalf("got %s %q", resp.Status, body)
		}
		// The frame bytes were never tunnelled to the origin.
		if g := <-got; g != "after non-101: " {
			t.Fatalf("origin saw %q", g)
		}
	})
}

// TestHeaders checks hop-by-hop removal and the anonymity modes.
func TestHeaders(t *testing.T) {
	checkLeaks(t)
	origin := newOrigin(t)
	for _, tc := range []struct {
		mode    Anonymity
		wantXFF string
		wantVia string
	}{
		{Elite, "", ""},
		{Anonymous, "1.2.3.4", "1.1 duplex"},
		{Transparent, "1.2.3.4, 127.0.0.1", "1.1 duplex"},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			p := startProxy(t, Config{Allow: loopback, Anonymity: tc.mode})
			c := dialProxy(t, p.addr)
			fmt.Fprintf(c, "GET %s/h HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\n"+
				"X-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"+
				"Upgrade: h2c\r\nX-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\n"+
				"X-Keep: yes\r\n\r\n", origin.URL)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			h := resp.Header
			for _, k := range []string{"X-Echo-X-Secret", "X-Echo-Keep-Alive", "X-Echo-Proxy-Connection", "X-Echo-Te", "X-Echo-Upgrade"} {
				if v := h.Get(k); v != "" {
					t.Errorf("%s reached the origin: %q", k, v)
				}
			}
			if h.Get("X-Echo-X-Keep") != "yes" {
				t.Error("end-to-end header X-Keep lost")
			}
			if got := h.Get("X-Echo-X-Forwarded-For"); got != tc.wantXFF {
				t.Errorf("X-Forwarded-For %q, want %q", got, tc.wantXFF)
			}
			if got := h.Get("X-Echo-Via"); got != tc.wantVia {
				t.Errorf("Via %q, want %q", got, tc.wantVia)
			}
			if tc.mode == Elite && (h.Get("X-Echo-X-Real-Ip") != "" || h.Get("X-Echo-Forwarded") != "") {
				t.Error("elite let identifying headers through")
			}
		})
	}
}

// TestRequestBodies: Content-Length and chunked bodies, 100-continue.
func TestRequestBodies(t *testing.T) {
	checkLeaks(t)
	origin := httpOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d %q", r.Method, len(b), b)
	})
	p := startProxy(t, Config{Allow: loopback})
	cl := proxyClient(t, p.addr)
	resp, err := cl.Post(origin+"/p", "text/plain", strings.NewReader("abc"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != `POST 3 "abc"` {
		t.Fatalf("got %q", b)
	}
	// Chunked, with a trailer, and Expect: 100-continue, via curl.
	out, err := runCmd(t, "curl", "-sS", "--max-time", "10", "-x", "http://"+p.addr,
		"-H", "Transfer-Encoding: chunked", "-H", "Expect: 100-continue", "--data-binary", "hello world", origin+"/c")
	if err != nil || out != `POST 11 "hello world"` {
		t.Fatalf("curl chunked: %v %q", err, out)
	}
}

// TestHalfClose: a client that half-closes still gets the answer, through
// CONNECT, SOCKS5 and SOCKS4 (squid and tinyproxy tear the tunnel down
// instead).
func TestHalfClose(t *testing.T) {
	checkLeaks(t)
	o := rawOrigin(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		fmt.Fprintf(c, "got %d bytes", len(b))
	})
	_, portS, _ := net.SplitHostPort(o)
	var port uint16
	fmt.Sscan(portS, &port)
	p := startProxy(t, Config{Allow: loopback})
	dials := map[string]func() net.Conn{
		"connect": func() net.Conn { c, _ := httpConnectDial(t, p.addr, o); return c },
		"socks5":  func() net.Conn { c, _ := socks5Dial(t, p.addr, atypIPv4, "127.0.0.1", port); return c },
		"socks4":  func() net.Conn { c, _ := socks4Dial(t, p.addr, "127.0.0.1", port); return c },
	}
	for name, dial := range dials {
		t.Run(name, func(t *testing.T) {
			c := dial()
			io.WriteString(c, strings.Repeat("x", 100000))
			c.(*net.TCPConn).CloseWrite()
			b, err := io.ReadAll(c)
			if err != nil || string(b) != "got 100000 bytes" {
				t.Fatalf("%q %v", b, err)
			}
		})
	}
}

// TestAccessLog checks the one line per tunnel.
func TestAccessLog(t *testing.T) {
	checkLeaks(t)
	o := echoOrigin(t)
	p := startProxy(t, Config{Allow: loopback})
	c, code := httpConnectDial(t, p.addr, o)
	if code != 200 {
		t.Fatal(code)
	}
	io.WriteString(c, "12345")
	c.(*net.TCPConn).CloseWrite()
	io.ReadAll(c)
	c.Close()
	// Shutdown waits for the connection goroutine, which logs on its way out.
	waitIdle(t, p)
	line := p.log.String()
	for _, want := range []string{`"msg":"proxy"`, `"proto":"connect"`, `"client":"127.0.0.1:`,
		`"target":"` + o + `"`, `"addr":"` + o + `"`, `"bytes_up":5`, `"bytes_down":5`, `"duration_ms":`, `"outcome":"ok"`} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s:\n%s", want, line)
		}
	}
	var sb strings.Builder
	p.WriteMetrics(&sb)
	for _, want := range []string{
		"duplex_proxy_connections_accepted_total 1",
		`duplex_proxy_requests_total{outcome="ok",proto="connect"} 1`,
		`duplex_proxy_bytes_total{direction="up"} 5`,
	} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, sb.String())
		}
	}
}

// waitIdle polls until the proxy has no open client connection.
func waitIdle(t testing.TB, p *testProxy) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.metrics.open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open on %s; log:\n%s", p.metrics.open.Load(), p.addr, p.log.String())
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
}

// TestOriginClosedKeepAlive: an origin that closes its kept-alive
// connection after each answer; the proxy retries a bodiless request on a
// fresh connection instead of answering 502.
func TestOriginClosedKeepAlive(t *testing.T) {
	checkLeaks(t)
	o := rawOrigin(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		body := "hello " + req.URL.Path
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		// and close without saying so
	})
	p := startProxy(t, Config{Allow: loopback})
	c := dialProxy(t, p.addr)
	br := bufio.NewReader(c)
	for i := range 3 {
		fmt.Fprintf(c, "GET http://%s/r%d HTTP/1.1\r\nHost: x\r\n\r\n", o, i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(b) != fmt.Sprintf("hello /r%d", i) {
			t.Fatalf("request %d: %s %q", i, resp.Status, b)
		}
	}
}

// TestHugeResponseHead: an origin that sends an endless response head
// gets its client a 502, not the proxy's memory.
func TestHugeResponseHead(t *testing.T) {
	checkLeaks(t)
	o := rawOrigin(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Big: " + strings.Repeat("a", 1000) + "\r\n"
		for range 1000 { // 1 MB of head
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	})
	p := startProxy(t, Config{Allow: loopback})
	if code := httpForward(t, p.addr, "http://"+o+"/"); code != 502 {
		t.Fatalf("got %d, want 502", code)
	}
}

// TestLiveByteMetrics: tunnel bytes show in the metrics while the tunnel
// is still open.
func TestLiveByteMetrics(t *testing.T) {
	checkLeaks(t)
	o := echoOrigin(t)
	p := startProxy(t, Config{Allow: loopback})
	c, code := httpConnectDial(t, p.addr, o)
	if code != 200 {
		t.Fatal(code)
	}
	io.WriteString(c, "0123456789")
	io.ReadFull(c, make([]byte, 10))
	deadline := time.Now().Add(10 * time.Second)
	for p.metrics.bytesUp.Load() != 10 || p.metrics.bytesDown.Load() != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("bytes up %d down %d, want 10 and 10 while open", p.metrics.bytesUp.Load(), p.metrics.bytesDown.Load())
		}
		time.Sleep(time.Millisecond) // polling
	}
	c.Close()
	waitIdle(t, p)
	if p.metrics.bytesUp.Load() != 10 || p.metrics.bytesDown.Load() != 10 {
		t.Fatalf("counted twice: up %d down %d", p.metrics.bytesUp.Load(), p.metrics.bytesDown.Load())
	}
}

// TestForwardedSilentStreamEndsWhenClientLeaves: a client that leaves a
// forwarded stream while the origin sends nothing ends the forward at
// once — the origin sees its request's connection close — instead of
// holding both connections until the origin next writes (and Shutdown
// waiting for that). The log says the client closed it.
func TestForwardedSilentStreamEndsWhenClientLeaves(t *testing.T) {
	checkLeaks(t)
	originSawClose := make(chan struct{})
	origin := httpOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ": open\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // silent until the proxy lets go
		close(originSawClose)
	})
	p := startProxy(t, Config{Allow: loopback})
	c := dialProxy(t, p.addr)
	fmt.Fprintf(c, "GET %s/events HTTP/1.1\r\nHost: x\r\n\r\n", origin)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c.Close()
	select {
	case <-originSawClose:
	case <-time.After(20 * time.Second):
		t.Fatal("the origin's silent stream is still held 20 s after the client left")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !strings.Contains(p.log.String(), `"outcome":"client_closed"`) {
		select {
		case <-ctx.Done():
			t.Fatalf("no client_closed line in the access log:\n%s", p.log.String())
		case <-time.After(20 * time.Millisecond): // polling the log for the line
		}
	}
}
