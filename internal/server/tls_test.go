package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/internal/tlstest"
	"github.com/duplexhq/duplex/msg"
)

// startTLSHub starts a hub serving HTTPS and WSS with a leaf the test CA
// signed.
func startTLSHub(t *testing.T, cfg server.Config) (*hubtest.Hub, *tlstest.CA) {
	t.Helper()
	ca := tlstest.NewCA(t)
	leaf := ca.Issue(t, 2)
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.Cert}}
	return hubtest.Start(t, &hubtest.Options{Server: cfg}), ca
}

// h2Client is a net/http client that trusts ca and offers HTTP/2.
func h2Client(ca *tlstest.CA) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool()},
		ForceAttemptHTTP2: true,
	}}
}

// TestTLSClientTransports: the Go client, trusting the test CA, subscribes
// and publishes over each transport against an https hub. Over SSE, NDJSON
// and long polling the subscription's stream and the publishes share one
// TCP connection: HTTP/2 was negotiated and the streams did not end it.
func TestTLSClientTransports(t *testing.T) {
	h, ca := startTLSHub(t, server.Config{})
	for _, tr := range []client.Transport{client.WebSocket, client.SSE, client.Stream, client.Poll} {
		t.Run(string(tr), func(t *testing.T) {
			var dials atomic.Int32
			d := &net.Dialer{}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, h.URL, &client.DialOptions{
				Transport: tr, Proxy: "direct", TLSConfig: &tls.Config{RootCAs: ca.Pool()},
				Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
					dials.Add(1)
					return d.DialContext(ctx, network, addr)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ch := "tls-" + string(tr)
			sub, err := c.Subscribe(ctx, []string{ch}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			for i := range 3 {
				data := fmt.Sprintf(`{"n":%d}`, i)
				if _, err := c.Publish(ctx, ch, json.RawMessage(data)); err != nil {
					t.Fatal(err)
				}
				ev, err := sub.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if ev.Message == nil || string(ev.Message.Data) != data {
					t.Fatalf("event %d: %+v", i, ev)
				}
			}
			if tr != client.WebSocket {
				if n := dials.Load(); n != 1 {
					t.Fatalf("%d TCP connections for a %s subscription and its publishes; want 1 (HTTP/2)", n, tr)
				}
			}
		})
	}
}

// TestTLSHTTP2Streams: SSE and long polls are answered over HTTP/2, and an
// open SSE stream leaves its connection open to further requests (no
// GOAWAY from the Connection: close HTTP/1.x streams carry).
func TestTLSHTTP2Streams(t *testing.T) {
	h, ca := startTLSHub(t, server.Config{})
	hc := h2Client(ca)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	sse, err := hc.Do(mustRequest(t, ctx, "GET", h.URL+"/v1/sse?channel=h2", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Body.Close()
	if sse.ProtoMajor != 2 || sse.StatusCode != 200 || sse.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("SSE: %s %d %q; want HTTP/2 200 text/event-stream", sse.Proto, sse.StatusCode, sse.Header.Get("Content-Type"))
	}
	events := bufio.NewReader(sse.Body)
	if line, err := events.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("SSE's first line %q, %v", line, err)
	}

	var reused atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused.Store(i.Reused) }}
	poll, err := hc.Do(mustRequest(t, httptrace.WithClientTrace(ctx, trace), "GET", h.URL+"/v1/poll?channel=h2&timeout=1ms", nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(poll.Body)
	poll.Body.Close()
	if poll.ProtoMajor != 2 || poll.StatusCode != 200 {
		t.Fatalf("poll: %s %d %s; want HTTP/2 200", poll.Proto, poll.StatusCode, body)
	}
	if !reused.Load() {
		t.Fatal("the poll opened a new connection: the SSE stream's ended the first for new requests")
	}

	pub, err := hc.Do(mustRequest(t, httptrace.WithClientTrace(ctx, trace), "POST", h.URL+"/v1/channels/h2/messages", strings.NewReader(`{"via":"h2"}`)))
	if err != nil {
		t.Fatal(err)
	}
	pub.Body.Close()
	if pub.ProtoMajor != 2 || pub.StatusCode != 201 || !reused.Load() {
		t.Fatalf("publish: %s %d reused=%v; want HTTP/2 201 on the same connection", pub.Proto, pub.StatusCode, reused.Load())
	}
	for {
		line, err := events.ReadString('\n')
		if err != nil {
			t.Fatalf("SSE ended before the message: %v", err)
		}
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"via":"h2"`) {
			break
		}
	}
}

func mustRequest(t *testing.T, ctx context.Context, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestTLSCurlHTTP2: curl --http2 --cacert gets SSE and long-poll answers
// over HTTP/2 (curl's own ALPN, not Go's).
func TestTLSCurlHTTP2(t *testing.T) {
	if out, err := exec.Command("curl", "-V").Output(); err != nil || !strings.Contains(string(out), "HTTP2") {
		t.Fatalf("this test needs a curl with HTTP2 (curl -V): %v\n%s", err, out)
	}
	h, ca := startTLSHub(t, server.Config{})
	caFile := ca.WriteCA(t, t.TempDir())

	out, err := exec.Command("curl", "-sS", "--http2", "--cacert", caFile, "-o", "/dev/null",
		"-w", "%{http_version} %{http_code}", h.URL+"/v1/poll?channel=curl&timeout=1ms").CombinedOutput()
	if err != nil || string(out) != "2 200" {
		t.Fatalf("curl poll: %q, %v; want \"2 200\"", out, err)
	}

	cmd := exec.Command("curl", "-sS", "-N", "--http2", "--cacert", caFile, "-D", "-", h.URL+"/v1/sse?channel=curl")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || strings.TrimSpace(sc.Text()) != "HTTP/2 200" {
		t.Fatalf("curl SSE status line %q, %v; want HTTP/2 200", sc.Text(), sc.Err())
	}
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "retry:") {
			return
		}
	}
	t.Fatalf("curl SSE ended before its retry: line: %v", sc.Err())
}

// TestTLSRefusalSpeaksTLS: a connection over MaxConnections on an https
// hub is answered 503 unavailable through TLS, which an HTTPS client reads
// as an answer (not a handshake failure).
func TestTLSRefusalSpeaksTLS(t *testing.T) {
	h, ca := startTLSHub(t, server.Config{MaxConnections: 1})
	held, err := tls.Dial("tcp", h.Addr, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	resp, err := h2Client(ca).Get(h.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body msg.ErrorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 503 || body.Error.Code != msg.CodeUnavailable {
		t.Fatalf("over the cap: %d %+v %v; want 503 unavailable", resp.StatusCode, body, err)
	}
}

// TestTLSIdleHandshakesAndSlowloris: 500 connections that never send a
// ClientHello and 500 that finish the handshake and then dribble header
// lines do not stop a normal client from being served while they are open,
// and the hub cuts every one of them (ReadHeaderTimeout bounds both the
// handshake and the headers).
func TestTLSIdleHandshakesAndSlowloris(t *testing.T) {
	const n = 500
	h, ca := startTLSHub(t, server.Config{ReadHeaderTimeout: time.Second})
	conf := &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"http/1.1"}}

	var attackers []net.Conn
	defer func() {
		for _, c := range attackers {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", h.Addr)
		if err != nil {
			t.Fatal(err)
		}
		attackers = append(attackers, c)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := make(chan struct{})
	defer close(stop)
	for range n {
		c, err := tls.Dial("tcp", h.Addr, conf)
		if err != nil {
			t.Fatal(err)
		}
		attackers = append(attackers, c)
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { dribble(c, stop) })
	}

	// The normal client, while all of them are open.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, h.URL, &client.DialOptions{Transport: client.SSE, Proxy: "direct", TLSConfig: &tls.Config{RootCAs: ca.Pool()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, []string{"loris"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := c.Publish(ctx, "loris", json.RawMessage(`"served"`)); err != nil {
		t.Fatal(err)
	}
	if ev, err := sub.Next(ctx); err != nil || ev.Message == nil || string(ev.Message.Data) != `"served"` {
		t.Fatalf("normal client: %+v, %v", ev, err)
	}

	// Every attacker is cut by the hub: its read ends, before the
	// backstop deadline, with EOF or a reset rather than a timeout.
	for i, a := range attackers {
		a.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.Copy(io.Discard, a)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("attacker %d (idle handshake: %v) still open: the hub did not cut it", i, i < n)
		}
	}
}

// dribble sends c one header line every 100ms until a write fails (the
// hub cut it) or stop closes.
func dribble(c net.Conn, stop <-chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "X-Slow: 1\r\n"); err != nil {
			return
		}
	}
}

// TestTLSHTTP1Stream: a client that offers only http/1.1 gets its SSE
// stream over TLS from the hijacked-connection writer (stream.go), which
// then writes through the TLS connection.
func TestTLSHTTP1Stream(t *testing.T) {
	h, ca := startTLSHub(t, server.Config{})
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sse, err := hc.Do(mustRequest(t, ctx, "GET", h.URL+"/v1/sse?channel=h1", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Body.Close()
	if sse.ProtoMajor != 1 || sse.StatusCode != 200 {
		t.Fatalf("SSE: %s %d; want HTTP/1.1 200", sse.Proto, sse.StatusCode)
	}
	events := bufio.NewReader(sse.Body)
	if line, err := events.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("SSE's first line %q, %v", line, err)
	}
	pub, err := h2Client(ca).Post(h.URL+"/v1/channels/h1/messages", "application/json", strings.NewReader(`{"via":"h1"}`))
	if err != nil {
		t.Fatal(err)
	}
	pub.Body.Close()
	for {
		line, err := events.ReadString('\n')
		if err != nil {
			t.Fatalf("SSE ended before the message: %v", err)
		}
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"via":"h1"`) {
			return
		}
	}
}
