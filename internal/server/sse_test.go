package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
)

func nextEvent(t testing.TB, d *bench.SSEReader, skipComments bool) bench.SSEEvent {
	t.Helper()
	for {
		ev, err := d.Next()
		if err != nil {
			t.Fatalf("sse: %v", err)
		}
		if ev.Comment && skipComments {
			continue
		}
		return ev
	}
}

func TestSSEStreamsAndResumes(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	c := testClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	resp := get(t, ctx, c, h.URL+"/v1/sse?channel=b&channel=a")
	wantStreamHeaders(t, resp, "text/event-stream")
	waitSubscribers(t, h, "a", 1)
	pa1 := publish(t, c, h.URL, "a", `{"text":"a1"}`)
	pb1 := publish(t, c, h.URL, "b", `{"text":"b1"}`)
	pa2 := publish(t, c, h.URL, "a", `{"text":"a2"}`)
	ea, eb := pa1.Epoch, pb1.Epoch
	// Before its first publication b stands at offset 0 with the epoch
	// the engine gave a channel never published: eb on memory, the empty
	// one on Redis (hub.Engine.History allows either).
	eb0 := eb
	if hubtest.OnRedis() {
		eb0 = ""
	}
	cur := func(a, b uint64) string {
		e := eb
		if b == 0 {
			e = eb0
		}
		return "a:" + ea + ":" + strconv.FormatUint(a, 10) + ",b:" + e + ":" + strconv.FormatUint(b, 10)
	}
	want := []bench.SSEEvent{
		{Type: "message", ID: cur(1, 0), Data: []byte(`{"type":"message","channel":"a","epoch":"` + ea + `","offset":1,"time":` + strconv.FormatInt(pa1.Time, 10) + `,"data":{"text":"a1"}}`)},
		{Type: "message", ID: cur(1, 1), Data: []byte(`{"type":"message","channel":"b","epoch":"` + eb + `","offset":1,"time":` + strconv.FormatInt(pb1.Time, 10) + `,"data":{"text":"b1"}}`)},
		{Type: "message", ID: cur(2, 1), Data: []byte(`{"type":"message","channel":"a","epoch":"` + ea + `","offset":2,"time":` + strconv.FormatInt(pa2.Time, 10) + `,"data":{"text":"a2"}}`)},
	}
	d := bench.NewSSEReader(resp.Body)
	for i, w := range want {
		ev := nextEvent(t, d, true)
		if ev.Type != w.Type || ev.ID != w.ID || string(ev.Data) != string(w.Data) {
			t.Fatalf("event %d:\n got %s id=%s %s\nwant %s id=%s %s", i, ev.Type, ev.ID, ev.Data, w.Type, w.ID, w.Data)
		}
	}
	if d.Retry != time.Second {
		t.Errorf("retry %v, want 1s", d.Retry)
	}
	cancel()

	// Reconnect as a browser does: Last-Event-ID wins over cursor=.
	resp = get(t, context.Background(), c, h.URL+"/v1/sse?channel=a&channel=b&cursor=a::0,b::0", "Last-Event-ID", want[0].ID)
	wantStreamHeaders(t, resp, "text/event-stream")
	// Replay goes channel by channel, in request order (order is kept per
	// channel, not across channels): a2, then b1.
	d = bench.NewSSEReader(resp.Body)
	for i, w := range []bench.SSEEvent{{ID: cur(2, 0), Data: want[2].Data}, {ID: cur(2, 1), Data: want[1].Data}} {
		ev := nextEvent(t, d, true)
		if ev.ID != w.ID || string(ev.Data) != string(w.Data) {
			t.Fatalf("resumed event %d: got id=%s %s, want id=%s %s", i, ev.ID, ev.Data, w.ID, w.Data)
		}
	}
	resp.Body.Close()
}

func TestSSEStartCursorAndHeartbeat(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{Heartbeat: 20 * time.Millisecond, SSERetry: 2500 * time.Millisecond}})
	c := testClient(t)
	p := publish(t, c, h.URL, "a", `1`)
	publish(t, c, h.URL, "a", `2`)

	resp := get(t, context.Background(), c, h.URL+"/v1/sse?channel=a")
	wantStreamHeaders(t, resp, "text/event-stream")
	d := bench.NewSSEReader(resp.Body)
	// An idle stream gets comment heartbeats; the opening id-only block has
	// already set the last event ID to the starting cursor ("now").
	for i := 0; i < 3; i++ {
		ev := nextEvent(t, d, false)
		if !ev.Comment || string(ev.Data) != "heartbeat" {
			t.Fatalf("got %+v, want a heartbeat comment", ev)
		}
	}
	if want := "a:" + p.Epoch + ":2"; d.LastEventID != want {
		t.Errorf("last event ID %q, want the starting cursor %q", d.LastEventID, want)
	}
	if d.Retry != 2500*time.Millisecond {
		t.Errorf("retry %v, want 2.5s", d.Retry)
	}
	resp.Body.Close()
}

func TestSSEGap(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Memory: memory.Config{HistorySize: 5}})
	c := testClient(t)
	var epoch string
	for i := 1; i <= 10; i++ {
		epoch = publish(t, c, h.URL, "a", numbered(i)).Epoch
	}
	resp := get(t, context.Background(), c, h.URL+"/v1/sse?channel=a&cursor=a:"+epoch+":2")
	wantStreamHeaders(t, resp, "text/event-stream")
	d := bench.NewSSEReader(resp.Body)
	ev := nextEvent(t, d, true)
	wantGap := `{"type":"gap","channel":"a","epoch":"` + epoch + `","next":6}`
	if ev.Type != "gap" || string(ev.Data) != wantGap || ev.ID != "a:"+epoch+":5" {
		t.Fatalf("got %s id=%s %s, want gap id=a:%s:5 %s", ev.Type, ev.ID, ev.Data, epoch, wantGap)
	}
	for i := 6; i <= 10; i++ {
		ev := nextEvent(t, d, true)
		f, err := bench.ParseFrame(ev.Data)
		if err != nil || f.Offset != uint64(i) || ev.ID != "a:"+epoch+":"+strconv.Itoa(i) {
			t.Fatalf("event %d: id=%s %s (%v)", i, ev.ID, ev.Data, err)
		}
	}
	resp.Body.Close()
}

func TestSSEShutdownEndsStreamCleanly(t *testing.T) {
	hubtest.CheckLeaks(t)
	h, err := hubtest.StartE(&hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop(t)
	c := testClient(t)
	sse := get(t, context.Background(), c, h.URL+"/v1/sse?channel=a")
	nd := get(t, context.Background(), c, h.URL+"/v1/stream?channel=a")
	wantStreamHeaders(t, sse, "text/event-stream")
	wantStreamHeaders(t, nd, "application/x-ndjson")
	waitSubscribers(t, h, "a", 2)
	p := publish(t, c, h.URL, "a", `"last"`)
	d := bench.NewSSEReader(sse.Body)
	n := bench.NewNDJSONReader(nd.Body)
	if ev := nextEvent(t, d, true); ev.ID != "a:"+p.Epoch+":1" {
		t.Fatalf("got id %s", ev.ID)
	}
	for {
		f, err := n.Next()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == "message" {
			break
		}
	}
	h.Stop(t)
	// Both streams end: a complete chunked body, then EOF, no error.
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || !ev.Comment {
			t.Fatalf("after shutdown: %+v, %v", ev, err)
		}
	}
	for {
		f, err := n.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || f.Type != "heartbeat" {
			t.Fatalf("after shutdown: %+v, %v", f, err)
		}
	}
	if d.LastEventID != "a:"+p.Epoch+":1" {
		t.Errorf("last event ID %q", d.LastEventID)
	}
}

// TestSSESlowReaderIsCutAndResumes: a reader that stops reading is cut by
// the write deadline while the publisher goes on; it then takes what had
// reached it, reconnects with its last event ID and gets the rest, every
// message once, in order.
func TestSSESlowReaderIsCutAndResumes(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{
		Hub: hub.Config{QueueBytes: 64 << 20},
		// The deadline cuts the reader that stops; it must also spare the
		// resumed reader, which reads 20 MB under the race detector on a
		// loaded machine: 1s cut it mid-replay in full parallel runs.
		Server: server.Config{WriteTimeout: 3 * time.Second},
	})
	c := testClient(t)
	conn, err := net.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// From the oldest retained, not "now": waitSubscribers sees the
	// session attached, which on Redis comes before its SUBSCRIBE is in
	// place, so a "now" start could begin after message 1.
	fmt.Fprintf(conn, "GET /v1/sse?channel=slow&cursor=slow::0 HTTP/1.1\r\nHost: %s\r\n\r\n", h.Addr)
	waitSubscribers(t, h, "slow", 1)
	big := strings.Repeat("x", 60000)
	const total = 400
	for n := 1; n <= total; n++ {
		publish(t, c, h.URL, "slow", fmt.Sprintf(`{"n":%d,"pad":"%s"}`, n, big))
	}
	// 24 MB is far more than the kernels buffer: the writer stalls and
	// its write deadline cuts the stream.
	waitSessions(t, h, 0)
	// What reached the reader before the cut.
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	check := func(ev bench.SSEEvent) {
		t.Helper()
		f, err := bench.ParseFrame(ev.Data)
		if err != nil || f.Type != "message" || f.Offset != uint64(got+1) {
			t.Fatalf("after %d messages got %s %.80s (%v)", got, ev.Type, ev.Data, err)
		}
		got++
	}
	d := bench.NewSSEReader(resp.Body)
	for {
		ev, err := d.Next()
		if err != nil {
			break // the cut: EOF or a torn chunk
		}
		if !ev.Comment {
			check(ev)
		}
	}
	if got >= total {
		t.Fatalf("the reader got all %d messages before the cut", got)
	}
	// Resume with the last event ID, as a browser would. The replay is
	// ~20 MB under the same 1 s write deadline: a reader slowed down by a
	// loaded machine (and the race detector) may be cut again, and then
	// resumes again, as a browser would; what counts is that it ends with
	// every message once, in order.
	last := d.LastEventID
	resumedAt := got
	for attempt := 1; got < total; attempt++ {
		if attempt > 20 {
			t.Fatalf("resumed at %d, got to %d in 20 attempts; hub %+v", resumedAt, got, h.Hub.Stats())
		}
		resp2 := get(t, context.Background(), c, h.URL+"/v1/sse?channel=slow", "Last-Event-ID", last)
		wantStreamHeaders(t, resp2, "text/event-stream")
		d2 := bench.NewSSEReader(resp2.Body)
		for got < total {
			ev, err := d2.Next()
			if err != nil {
				t.Logf("resumed stream %d cut at %d: %v", attempt, got, err)
				break
			}
			if !ev.Comment {
				check(ev)
			}
		}
		if d2.LastEventID != "" {
			last = d2.LastEventID
		}
		resp2.Body.Close()
	}
	t.Logf("cut after %d of %d messages reached the reader; resumed from %s", resumedAt, total, last)
}
