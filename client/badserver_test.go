package client

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// These tests put the client in front of servers that break the wire
// contract on purpose — garbage, truncation, silence — over real sockets on
// 127.0.0.1. The real hub is tested in e2e; a misbehaving hub can only be a
// stand-in.

// serve runs h on 127.0.0.1:0 until the test ends.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// hang accepts connections and never answers, until the test ends.
func hang(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { io.Copy(io.Discard, c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String()
}

// shortOpts keep every timeout short, so failures show fast.
func shortOpts(tr Transport) *DialOptions {
	return &DialOptions{
		Transport:      tr,
		Proxy:          "direct",
		ConnectTimeout: 300 * time.Millisecond,
		ReadTimeout:    300 * time.Millisecond,
		RequestTimeout: 300 * time.Millisecond,
		PollTimeout:    100 * time.Millisecond,
		MinBackoff:     time.Millisecond,
		MaxBackoff:     10 * time.Millisecond,
		MaxFrame:       64 << 10,
	}
}

// stream answers a subscribing request with a content type and body.
func stream(contentType, body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		io.WriteString(w, body)
	})
}

const env1 = `{"type":"message","channel":"c","epoch":"e1","offset":1,"time":1,"data":1}`

// TestBadStreams: garbage and truncation on every HTTP transport end the
// subscription with a protocol error, promptly, and leak nothing.
func TestBadStreams(t *testing.T) {
	checkLeaks(t)
	for _, tc := range []struct {
		name string
		tr   Transport
		h    http.Handler
		want string
	}{
		{"sse garbage data", SSE, stream("text/event-stream", "id: c:e1:0\n\nevent: message\ndata: {not json\n\n"), "not a JSON object"},
		{"sse truncated event", SSE, stream("text/event-stream", "id: c:e1:0\n\nevent: message\ndata: "+env1), "stream ended in the middle"},
		{"sse bad start cursor", SSE, stream("text/event-stream", "id: c:e1:zz\n\n"), "invalid cursor"},
		{"sse message for another channel", SSE, stream("text/event-stream", "id: c:e1:0\n\ndata: "+strings.Replace(env1, `"c"`, `"other"`, 1)+"\n\n"), "not subscribed"},
		{"sse offset 0", SSE, stream("text/event-stream", "id: c:e1:0\n\ndata: "+strings.Replace(env1, `"offset":1`, `"offset":0`, 1)+"\n\n"), "offset 0"},
		{"sse line too long", SSE, stream("text/event-stream", "data: "+strings.Repeat("x", 100<<10)+"\n\n"), "longer than"},
		{"stream garbage line", Stream, stream("application/x-ndjson", `{"type":"heartbeat","cursor":"c:e1:0"}`+"\ngarbage\n"), "not a JSON object"},
		{"stream array line", Stream, stream("application/x-ndjson", "[1,2]\n"), "not a JSON object"},
		{"stream truncated line", Stream, stream("application/x-ndjson", `{"type":"heartbeat","cursor":"c:e1:0"}`+"\n"+env1[:30]), "stream ended in the middle"},
		{"stream untyped object", Stream, stream("application/x-ndjson", "{}\n"), "without a type"},
		{"stream bad gap", Stream, stream("application/x-ndjson", `{"type":"gap","channel":"c","epoch":"E!","next":3}`+"\n"), "invalid epoch"},
		{"poll garbage", Poll, stream("application/json", "<html>hello</html>"), "long-poll answer"},
		{"poll null", Poll, stream("application/json", "null"), "no messages"},
		{"poll bad message", Poll, stream("application/json", `{"messages":[{"type":"message"}],"gaps":[],"cursor":""}`), "invalid channel"},
		{"poll bad cursor", Poll, stream("application/json", `{"messages":[],"gaps":[],"cursor":"c:e1"}`), "invalid cursor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := serve(t, tc.h)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, url, shortOpts(tc.tr))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := c.Subscribe(ctx, []string{"c"}, nil)
			if err == nil {
				_, err = s.Next(ctx)
				s.Close()
			}
			if err == nil || !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want a protocol error mentioning %q", err, tc.want)
			}
			if ctx.Err() != nil {
				t.Fatal("the error came only when the test's context ended")
			}
		})
	}
}

// TestUnsupportedAnswers: a 404 or a wrong content type is "transport not
// here": fatal for an explicit transport, a fallback for Auto.
func TestUnsupportedAnswers(t *testing.T) {
	checkLeaks(t)
	url := serve(t, stream("text/html", "<html>captive portal</html>"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tr := range []Transport{SSE, Stream, Poll, Auto} {
		c, err := Dial(ctx, url, shortOpts(tr))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Subscribe(ctx, []string{"c"}, nil)
		c.Close()
		var ue *UnsupportedError
		if !errors.As(err, &ue) {
			t.Fatalf("%s: error %v, want *UnsupportedError", tr, err)
		}
		if tr == Auto && ue.Transport != Poll {
			t.Fatalf("auto ended on %s, want poll (the last fallback): %v", ue.Transport, err)
		}
	}
}

// wsAccept performs a minimal WebSocket handshake by hand and returns the
// raw connection, so a test can write broken frames.
func wsAccept(w http.ResponseWriter, r *http.Request) net.Conn {
	key := r.Header.Get("Sec-WebSocket-Key")
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
	brw.Flush()
	return conn
}

// textFrame is an unmasked server text frame.
func textFrame(s string) []byte {
	if len(s) > 125 {
		panic("short frames only")
	}
	return append([]byte{0x81, byte(len(s))}, s...)
}

// TestBadWebSocket: truncated frames, garbage text and binary frames from
// a WebSocket "hub". A connection that just ends — in a frame, between
// frames, with a reset — is reported as close code 1006 and retried.
func TestBadWebSocket(t *testing.T) {
	checkLeaks(t)
	for _, tc := range []struct {
		name  string
		bytes []byte
		fatal bool // a protocol error ends the subscription
		want  string
		reset bool // end with a TCP reset instead of a FIN
	}{
		{"garbage text", textFrame("hello"), true, "not a JSON object", false},
		{"binary frame", []byte{0x82, 1, 0}, true, "binary", false},
		{"bad envelope", append(textFrame(`{"id":1,"type":"ok","epoch":"e1","offset":0}`), textFrame(`{"type":"message","channel":"c"}`)...), true, "invalid epoch", false},
		{"truncated frame header", []byte{0x81, 0x7e, 0x01}, false, "EOF", false},
		{"truncated payload", []byte{0x81, 10, '{', '"'}, false, "EOF", false},
		{"end between frames", textFrame(`{"type":"pong"}`), false, "EOF", false},
		{"reset in a frame", []byte{0x81, 10, '{', '"'}, false, "reset", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn := wsAccept(w, r)
				defer conn.Close()
				conn.Write(tc.bytes)
				if tc.reset {
					conn.(*net.TCPConn).SetLinger(0)
				}
			}))
			opts := shortOpts(WebSocket)
			var mu sync.Mutex
			var disconnects []error
			opts.OnDisconnect = func(_ Transport, err error) {
				mu.Lock()
				disconnects = append(disconnects, err)
				mu.Unlock()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, url, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sctx, scancel := context.WithTimeout(ctx, time.Second)
			defer scancel()
			s, err := c.Subscribe(sctx, []string{"c"}, nil)
			if err == nil {
				_, err = s.Next(sctx)
				s.Close()
			}
			if tc.fatal {
				if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v; want a protocol error mentioning %q", err, tc.want)
				}
				return
			}
			// Not fatal: the client keeps reconnecting; each failure is
			// reported, and the caller's context bounds the wait.
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error %v, want the caller's deadline", err)
			}
			mu.Lock()
			defer mu.Unlock()
			mentioned := false
			for _, e := range disconnects {
				mentioned = mentioned || strings.Contains(e.Error(), tc.want)
				if msg.CloseCodeOf(e) != msg.CloseAbnormal {
					t.Errorf("disconnect %v: close code %d, want %d (no close frame)", e, msg.CloseCodeOf(e), msg.CloseAbnormal)
				}
			}
			if len(disconnects) < 2 || !mentioned {
				t.Fatalf("disconnects %v; want repeated ones mentioning %q", disconnects, tc.want)
			}
		})
	}
}

// TestHangingHub: a hub that accepts connections and says nothing. Every
// call errors within its timeout, naming it; subscriptions keep retrying
// and report each timeout.
func TestHangingHub(t *testing.T) {
	checkLeaks(t)
	url := hang(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	start := time.Now()
	_, err := Dial(ctx, url, shortOpts(WebSocket))
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("Dial ws: %v", err)
	}
	if ctx.Err() != nil || time.Since(start) > 5*time.Second {
		t.Fatal("Dial did not give up on its own")
	}

	c, err := Dial(ctx, url, shortOpts(SSE))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Publish(ctx, "c", []byte("1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish: %v", err)
	}
	if _, err := c.History(ctx, "c", 0, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("History: %v", err)
	}
	for _, tr := range []Transport{SSE, Stream, Poll} {
		opts := shortOpts(tr)
		got := disconnects(opts, 16)
		c, err := Dial(ctx, url, opts)
		if err != nil {
			t.Fatal(err)
		}
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		_, err = c.Subscribe(sctx, []string{"c"}, nil)
		scancel()
		c.Close()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: Subscribe: %v", tr, err)
		}
		if e := <-got; !strings.Contains(e.Error(), "timed out") {
			t.Fatalf("%s: disconnect reason %v", tr, e)
		}
	}
}

// TestSilentStream: a hub that opens a stream and then goes silent is
// taken for dead after ReadTimeout, and the client reconnects.
func TestSilentStream(t *testing.T) {
	checkLeaks(t)
	var mu sync.Mutex
	opens := 0
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		opens++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: c:e1:0\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	opts := shortOpts(SSE)
	got := disconnects(opts, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Subscribe(ctx, []string{"c"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := <-got; !strings.Contains(err.Error(), "waiting for data") || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("disconnect reason %v", err)
	}
}

// closeFrame is an unmasked server close frame with a code.
func closeFrame(code uint16, reason string) []byte {
	return append([]byte{0x88, byte(2 + len(reason)), byte(code >> 8), byte(code)}, reason...)
}

// TestCloseCodes: a close code whose Reconnect() is false ends the
// subscription with a *msg.CloseError; the others are retried.
func TestCloseCodes(t *testing.T) {
	checkLeaks(t)
	for _, tc := range []struct {
		code      uint16
		reconnect bool
	}{
		{1008, false}, {1003, false}, {1009, false},
		{1001, true}, {1011, true}, {1013, true},
	} {
		url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn := wsAccept(w, r)
			defer conn.Close()
			conn.Write(closeFrame(tc.code, "bye"))
			io.Copy(io.Discard, conn) // until the client closes
		}))
		opts := shortOpts(WebSocket)
		var mu sync.Mutex
		n := 0
		opts.OnDisconnect = func(_ Transport, err error) {
			mu.Lock()
			n++
			mu.Unlock()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		c, err := Dial(ctx, url, opts)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Subscribe(ctx, []string{"c"}, nil)
		c.Close()
		cancel()
		var ce *msg.CloseError
		if !tc.reconnect {
			if !errors.As(err, &ce) || uint16(ce.Code) != tc.code || ce.Reason != "bye" {
				t.Errorf("close %d: error %v, want the close error", tc.code, err)
			}
			continue
		}
		mu.Lock()
		if !errors.Is(err, context.DeadlineExceeded) || n < 2 {
			t.Errorf("close %d: error %v after %d connections, want retries until the deadline", tc.code, err, n)
		}
		mu.Unlock()
	}
}

// TestSilentWebSocket: a WebSocket peer that completes the handshake and
// then says nothing (not even to pings) is taken for dead after
// ReadTimeout, and the client reconnects.
func TestSilentWebSocket(t *testing.T) {
	checkLeaks(t)
	url := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn := wsAccept(w, r)
		defer conn.Close()
		io.Copy(io.Discard, conn) // reads, never answers
	}))
	opts := shortOpts(WebSocket)
	got := disconnects(opts, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	defer scancel()
	if _, err := c.Subscribe(sctx, []string{"c"}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Subscribe: %v", err)
	}
	if err := <-got; !strings.Contains(err.Error(), "no frame from the hub") {
		t.Fatalf("disconnect reason %v", err)
	}
}

// disconnects sets opts.OnDisconnect to pass its errors on the returned
// channel, as many as it holds (size); later ones are dropped.
func disconnects(opts *DialOptions, size int) <-chan error {
	got := make(chan error, size)
	opts.OnDisconnect = func(_ Transport, err error) {
		select {
		case got <- err:
		default:
		}
	}
	return got
}
