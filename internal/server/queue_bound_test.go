package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/duplexhq/duplex/internal/bench"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

// smallSendBuffers hands out accepted connections with a small kernel send
// buffer, so a reader that never reads backs up into the hub after a few
// KiB instead of after the megabytes loopback autotuning allows. (A client
// that never reads keeps its receive buffer at its initial size: the
// kernel grows it only as the application reads. Shrinking it after the
// connect would be worse than useless: segments inside the window already
// advertised are dropped and retried with backoff.)
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// rawSSE is an SSE client that sends its request and then reads nothing
// until told to.
type rawSSE struct {
	conn net.Conn
	req  *http.Request
}

func openRawSSE(t *testing.T, h *hubtest.Hub, query string) *rawSSE {
	t.Helper()
	c, err := net.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req, _ := http.NewRequest(http.MethodGet, h.URL+"/v1/sse?"+query, nil)
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	return &rawSSE{conn: c, req: req}
}

// readAll reads the stream to its end and returns its message events. A
// hang guard bounds the wait: a stream the hub never cut never ends.
func (r *rawSSE) readAll(t *testing.T) []bench.SSEEvent {
	t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(r.conn), r.req)
	if err != nil {
		t.Fatalf("sse response: %v", err)
	}
	d := bench.NewSSEReader(resp.Body)
	var evs []bench.SSEEvent
	for {
		ev, err := d.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			t.Fatalf("sse stream ended with %v after %d messages: not cut by the hub", err, len(evs))
		}
		if ev.Type == "message" && !ev.Comment {
			evs = append(evs, ev)
		}
	}
}

// TestMaxQueuedBytesCutsNonReaders: SSE and WebSocket clients that never
// read, under a small --max-queued-bytes, are cut as slow consumers while a
// reader that keeps up gets every message and stays; the hub's queued
// bytes never pass the bound; a non-reader whose backlog is small (a quiet
// channel) is left alone, since the largest go first; and every cut client
// resumes from its cursor without a loss or a duplicate.
func TestMaxQueuedBytesCutsNonReaders(t *testing.T) {
	hubtest.CheckLeaks(t)
	const bound = 1 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := hubtest.Start(t, &hubtest.Options{
		Hub: hub.Config{MaxQueuedBytes: bound, MinCutBytes: 64 << 10},
		// Only the hub cuts the non-readers here, never their write
		// timeout: the test reads them only at the end.
		Server:   server.Config{WriteDelay: -1, WriteTimeout: 2 * time.Minute},
		Listener: smallSendBuffers{ln},
	})
	c := testClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const sseNonReaders, wsNonReaders = 4, 2
	var sses []*rawSSE
	for range sseNonReaders {
		sses = append(sses, openRawSSE(t, h, "channel=t"))
	}
	quiet := openRawSSE(t, h, "channel=quiet")
	var wss []*websocket.Conn
	for range wsNonReaders {
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		ws, _, err := websocket.Dial(dctx, "ws://"+h.Addr+"/v1/ws", nil)
		dcancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.CloseNow() })
		wsSend(t, ws, `{"id":1,"type":"subscribe","channel":"t"}`)
		if f := wsRead(t, ws); f.Type != "ok" {
			t.Fatalf("subscribe: %+v", f)
		}
		wss = append(wss, ws)
	}
	reader := get(t, ctx, c, h.URL+"/v1/sse?channel=t")
	wantStreamHeaders(t, reader, "text/event-stream")
	rd := bench.NewSSEReader(reader.Body)
	waitSubscribers(t, h, "t", sseNonReaders+wsNonReaders+1)
	waitSubscribers(t, h, "quiet", 1)
	publish(t, c, h.URL, "quiet", `{"q":1}`)

	// The reader takes each message before the next is published, so its
	// backlog is never more than one; the non-readers' grow by 8 KiB a
	// message once their sockets are full, 3 MiB each in all.
	const total = 400
	pad := strings.Repeat("x", 8000)
	var epoch string
	for i := 1; i <= total; i++ {
		p := publish(t, c, h.URL, "t", fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, pad))
		epoch = p.Epoch
		// The total may pass the bound by one publication's fan-out
		// before the hub trims (docs/operations.md), and on Redis the
		// fan-out runs after the publish's 201, so it may be under way.
		fanout := int64(sseNonReaders+wsNonReaders+1) * int64(len(pad)+200)
		if q := h.Hub.Stats().QueuedBytes; q > bound+fanout {
			t.Fatalf("after message %d: %d bytes queued, over the bound %d plus one fan-out", i, q, bound)
		}
		ev := nextEvent(t, rd, true)
		if want := fmt.Sprintf("t:%s:%d", epoch, i); ev.Type != "message" || ev.ID != want {
			t.Fatalf("reader: event %q id %q, want message %q", ev.Type, ev.ID, want)
		}
	}
	st := h.Hub.Stats()
	if st.SlowCuts != sseNonReaders+wsNonReaders {
		t.Errorf("%d slow-consumer cuts, want %d (every non-reader of t)", st.SlowCuts, sseNonReaders+wsNonReaders)
	}

	resume := func(who string, after uint64) {
		t.Helper()
		rctx, rcancel := context.WithCancel(ctx)
		defer rcancel()
		resp := get(t, rctx, c, fmt.Sprintf("%s/v1/sse?channel=t&cursor=t:%s:%d", h.URL, epoch, after))
		wantStreamHeaders(t, resp, "text/event-stream")
		d := bench.NewSSEReader(resp.Body)
		for want := after + 1; want <= total; want++ {
			ev := nextEvent(t, d, true)
			if id := fmt.Sprintf("t:%s:%d", epoch, want); ev.Type != "message" || ev.ID != id {
				t.Fatalf("%s resumed after %d: event %q id %q, want %q", who, after, ev.Type, ev.ID, id)
			}
		}
	}
	for i, s := range sses {
		evs := s.readAll(t)
		var last uint64
		for _, ev := range evs {
			var cur msg.Cursor
			cur, err := msg.ParseCursor(ev.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got := cur["t"].Offset; got != last+1 {
				t.Fatalf("sse %d: offset %d after %d", i, got, last)
			}
			last = cur["t"].Offset
		}
		if last >= total {
			t.Fatalf("sse %d read all %d messages: it was never behind", i, total)
		}
		resume(fmt.Sprintf("sse %d", i), last)
	}
	for i, ws := range wss {
		var last uint64
		for {
			f, err := wsReadE(ws)
			if err != nil {
				if code := websocket.CloseStatus(err); code != websocket.StatusTryAgainLater {
					t.Fatalf("ws %d ended with %v after offset %d, want 1013", i, err, last)
				}
				break
			}
			if f.Type != "message" || f.Offset != last+1 {
				t.Fatalf("ws %d: %+v after offset %d", i, f, last)
			}
			last = f.Offset
		}
		resume(fmt.Sprintf("ws %d", i), last)
	}
	// The quiet one holds its one message, and its stream goes on; so
	// does the reader's.
	quiet.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(quiet.conn), quiet.req)
	if err != nil {
		t.Fatal(err)
	}
	qd := bench.NewSSEReader(resp.Body)
	publish(t, c, h.URL, "quiet", `{"q":2}`)
	for q := 1; q <= 2; q++ {
		if ev := nextEvent(t, qd, true); ev.Type != "message" || !strings.HasSuffix(ev.ID, fmt.Sprintf(":%d", q)) {
			t.Fatalf("quiet, message %d: %+v", q, ev)
		}
	}
	publish(t, c, h.URL, "t", `{"n":"last"}`)
	if ev := nextEvent(t, rd, true); ev.ID != fmt.Sprintf("t:%s:%d", epoch, total+1) {
		t.Fatalf("reader after the cuts: %+v", ev)
	}
	if st := h.Hub.Stats(); st.SlowCuts != sseNonReaders+wsNonReaders {
		t.Fatalf("%d slow-consumer cuts at the end, want %d", st.SlowCuts, sseNonReaders+wsNonReaders)
	}
	mresp, err := c.Get(h.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	body, _ := io.ReadAll(mresp.Body)
	for _, want := range []string{"\nduplex_queued_bytes ", fmt.Sprintf("\nduplex_slow_consumer_closes_total %d\n", sseNonReaders+wsNonReaders)} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
