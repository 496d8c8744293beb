package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

// acceptCounter is the server side of the known case: it counts the TCP
// connections a listener accepted.
type acceptCounter struct {
	net.Listener
	n atomic.Int64
}

func (l *acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func listenCounting(t *testing.T) *acceptCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &acceptCounter{Listener: ln}
}

// TestCountingDialerRequestsAndHandshakes makes n GETs to a server that
// counts the connections it accepts and the requests it serves, with
// keep-alive on (one connection) and off (one per request), and checks the
// dialer's counts against the server's, and its bytes against the bytes
// the server's connections carried.
func TestCountingDialerRequestsAndHandshakes(t *testing.T) {
	for _, keepAlive := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepalive=%v", keepAlive), func(t *testing.T) {
			ln := listenCounting(t)
			var served atomic.Int64
			body := []byte("hello, counted world\n")
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				served.Add(1)
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				w.Write(body)
			})}
			go srv.Serve(ln)
			defer srv.Close()

			d := NewCountingDialer()
			hc := &http.Client{Transport: &http.Transport{DialContext: d.Dial, DisableKeepAlives: !keepAlive}}
			defer hc.CloseIdleConnections()
			const n = 7
			var respBytes int64
			for i := range n {
				method := http.MethodGet
				var rb io.Reader
				if i%2 == 1 {
					method, rb = http.MethodPost, stringsReader("{\"x\":1}")
				}
				req, _ := http.NewRequest(method, "http://"+ln.Addr().String()+"/x", rb)
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != string(body) {
					t.Fatalf("body %q", b)
				}
				respBytes += int64(len(b))
			}
			got := d.Count.Totals()
			wantDials := int64(1)
			if !keepAlive {
				wantDials = n
			}
			if got.Dials != wantDials || ln.n.Load() != wantDials {
				t.Errorf("dials: counted %d, server accepted %d, want %d", got.Dials, ln.n.Load(), wantDials)
			}
			if got.Requests != n || served.Load() != n {
				t.Errorf("requests: counted %d, server served %d, want %d", got.Requests, served.Load(), n)
			}
			if got.Read <= respBytes || got.Written <= 0 {
				t.Errorf("bytes: read %d (bodies alone %d), written %d", got.Read, respBytes, got.Written)
			}
		})
	}
}

func stringsReader(s string) io.Reader { return &sliceReader{b: []byte(s)} }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// wireSize is the hand-computed size on the wire of one delivered
// envelope, with write coalescing off (one write per message): a
// WebSocket text frame (2-byte header, 4 with a 16-bit length), an SSE
// block or an NDJSON line, each of the latter two in one HTTP chunk.
func wireSize(transport string, env *msg.Envelope) int {
	j := env.AppendJSON(nil)
	chunk := func(n int) int { return len(strconv.FormatInt(int64(n), 16)) + 2 + n + 2 }
	switch transport {
	case "ws":
		switch {
		case len(j) < 126:
			return 2 + len(j)
		case len(j) < 1<<16:
			return 4 + len(j)
		}
		return 10 + len(j)
	case "sse":
		cursor := fmt.Sprintf("%s:%s:%d", env.Channel, env.Epoch, env.Offset)
		block := "id: " + cursor + "\nevent: message\ndata: " + string(j) + "\n\n"
		return chunk(len(block))
	case "stream":
		return chunk(len(j) + 1)
	}
	panic(transport)
}

// TestWireBytesPerMessage counts the bytes each push transport's reader
// receives for k messages, published one at a time with coalescing off,
// and compares them with the hand-computed frame, event and line sizes.
func TestWireBytesPerMessage(t *testing.T) {
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{WriteDelay: -1}})
	for _, tr := range []string{"ws", "sse", "stream"} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d := NewCountingDialer()
			c, err := client.Dial(ctx, h.URL, &client.DialOptions{Transport: client.Transport(tr), Dial: d.Dial, Proxy: "direct"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			channel := freshChannel("wire_" + tr)
			sub, err := c.Subscribe(ctx, []string{channel}, nil)
			if err != nil {
				t.Fatal(err)
			}
			next := func() *msg.Envelope {
				if _, err := publishOne(ctx, h.URL, channel, 100); err != nil {
					t.Fatal(err)
				}
				ev, err := sub.Next(ctx)
				if err != nil || ev.Message == nil {
					t.Fatalf("next: %+v, %v", ev, err)
				}
				return ev.Message
			}
			next() // after the opening bytes (SSE's retry: and id: block)
			before := d.Count.Totals()
			const k = 5
			want := 0
			for range k {
				want += wireSize(tr, next())
			}
			got := d.Count.Totals().Sub(before)
			if got.Read != int64(want) {
				t.Errorf("%d messages: %d bytes read at the socket, want %d (hand-computed)", k, got.Read, want)
			}
			if got.Dials != 0 || got.Requests != 0 {
				t.Errorf("dials %d, requests %d while receiving, want 0", got.Dials, got.Requests)
			}
		})
	}
}

// TestKeepAliveOffOpensAConnectionPerRequest runs long polling and plain
// polling with keep-alive off against a hub that counts the connections it
// accepts: every request is a connection of its own, on both sides.
func TestKeepAliveOffOpensAConnectionPerRequest(t *testing.T) {
	for _, tr := range []string{"poll", "history"} {
		t.Run(tr, func(t *testing.T) {
			ln := listenCounting(t)
			h := hubtest.Start(t, &hubtest.Options{Listener: ln})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			before := ln.n.Load()
			rd, err := runDelivery(ctx, deliverySpec{
				hub: HubInfo{Name: "t", URL: h.URL}, transport: tr, keepAlive: false,
				pollInterval: 50 * time.Millisecond, subscribers: 2, rate: 20, size: 100,
				warmup: 100 * time.Millisecond, duration: 500 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			if rd.delivered == 0 || rd.wire.Requests == 0 {
				t.Fatalf("delivered %d, requests %d", rd.delivered, rd.wire.Requests)
			}
			// In the measured window a request may be in flight at either
			// end: one per reader of slack.
			if diff := rd.wire.Dials - rd.wire.Requests; diff < -2 || diff > 2 {
				t.Errorf("window: %d dials for %d requests, want one each", rd.wire.Dials, rd.wire.Requests)
			}
			// Over the whole run (publisher's and probes' connections
			// aside) the hub accepted at least one connection per request.
			if acc := ln.n.Load() - before; acc < rd.wire.Requests {
				t.Errorf("hub accepted %d connections, fewer than the %d requests", acc, rd.wire.Requests)
			}
		})
	}
}

// TestHistoryPollingLatencyFollowsTheInterval polls every T while 7
// messages a second are published at times unrelated to the polls: each
// waits for the next poll, so the median latency is near T/2, far above a
// push transport's, and the slowest wait most of T.
func TestHistoryPollingLatencyFollowsTheInterval(t *testing.T) {
	h := hubtest.Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const T = 400 * time.Millisecond
	rd, err := runDelivery(ctx, deliverySpec{
		hub: HubInfo{Name: "t", URL: h.URL}, transport: "history", keepAlive: true,
		pollInterval: T, subscribers: 4, rate: 7, size: 100,
		warmup: 200 * time.Millisecond, duration: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := rd.latency.Summary()
	if rd.delivered < rd.expected || rd.delivered < 40 {
		t.Fatalf("delivered %d of %d", rd.delivered, rd.expected)
	}
	// Uniform arrival over a period of T: median T/2. A push transport's
	// median here is well under a millisecond; T/5 separates them.
	if s.P50 < float64(T/5/time.Microsecond) {
		t.Errorf("p50 %s with polling every %s: under T/5, as if pushed", fmtMicros(s.P50), T)
	}
	// Messages are spread over the whole interval: some wait most of T.
	if s.Max < float64(T/2/time.Microsecond) {
		t.Errorf("max %s with polling every %s: no message waited even T/2", fmtMicros(s.Max), T)
	}
	// Polls with keep-alive reuse their connection: one per poller.
	if rd.wire.Dials > 0 {
		t.Errorf("%d connections opened in the window with keep-alive", rd.wire.Dials)
	}
	// A poll is made each T whatever happens: 7.5 in the 3s window per
	// poller, and more during the drain.
	if perPoller := float64(rd.wire.Requests) / 4; perPoller < 6 {
		t.Errorf("%.1f requests per poller in 3s at T=%s, want about 7.5 or more", perPoller, T)
	}
}
