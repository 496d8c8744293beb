package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

// wsFrame is any hub → client frame of /v1/ws, decoded loosely.
type wsFrame struct {
	ID       json.RawMessage   `json:"id"`
	Type     string            `json:"type"`
	Code     string            `json:"code"`
	Message  string            `json:"message"`
	Channel  string            `json:"channel"`
	Epoch    string            `json:"epoch"`
	Offset   uint64            `json:"offset"`
	Time     int64             `json:"time"`
	Next     uint64            `json:"next"`
	Data     json.RawMessage   `json:"data"`
	Messages []json.RawMessage `json:"messages"`
}

func (f wsFrame) id() string { return string(f.ID) }

// wsDial opens /v1/ws (or another path) of h; the connection is closed when
// t ends.
func wsDial(t testing.TB, h *hubtest.Hub, path string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+h.Addr+path, &websocket.DialOptions{Subprotocols: []string{"duplex.v1"}})
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	c.SetReadLimit(-1)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func wsSend(t testing.TB, c *websocket.Conn, frame string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		t.Fatalf("write %.60s: %v", frame, err)
	}
}

// wsRead reads the next frame; it fails t on any error.
func wsRead(t testing.TB, c *websocket.Conn) wsFrame {
	t.Helper()
	f, err := wsReadE(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return f
}

func wsReadE(c *websocket.Conn) (wsFrame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		return wsFrame{}, err
	}
	if typ != websocket.MessageText {
		return wsFrame{}, fmt.Errorf("got a %v frame", typ)
	}
	var f wsFrame
	if err := json.Unmarshal(b, &f); err != nil {
		return wsFrame{}, fmt.Errorf("frame %q: %v", b, err)
	}
	return f, nil
}

// wsExpectClose reads until the connection ends and checks its close code.
func wsExpectClose(t testing.TB, c *websocket.Conn, want websocket.StatusCode) {
	t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err := c.Read(ctx)
		cancel()
		if err != nil {
			if got := websocket.CloseStatus(err); got != want {
				t.Fatalf("connection ended with %v (%v), want close %d", got, err, want)
			}
			return
		}
	}
}

// wsPing checks the connection still serves commands.
func wsPing(t testing.TB, c *websocket.Conn, id string) {
	t.Helper()
	wsSend(t, c, `{"id":"`+id+`","type":"ping"}`)
	for {
		f := wsRead(t, c)
		if f.Type == "pong" {
			if f.id() != `"`+id+`"` {
				t.Fatalf("pong for %s, want %q", f.id(), id)
			}
			return
		}
		if f.Type == "error" {
			t.Fatalf("ping answered with error %s: %s", f.Code, f.Message)
		}
	}
}

func wsPublishREST(t testing.TB, h *hubtest.Hub, channel, data string) msg.Published {
	t.Helper()
	p, err := h.Hub.Publish(context.Background(), channel, []byte(data))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return msg.Published{Channel: p.Channel, Epoch: p.Epoch, Offset: p.Offset, Time: p.Time}
}

func TestWSCommands(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	c := wsDial(t, h, "/v1/ws")
	if c.Subprotocol() != "duplex.v1" {
		t.Fatalf("subprotocol %q, want duplex.v1", c.Subprotocol())
	}
	first := wsPublishREST(t, h, "chat", `{"n":0}`)

	wsSend(t, c, `{"id":1,"type":"subscribe","channel":"chat"}`)
	f := wsRead(t, c)
	if f.Type != "ok" || f.id() != "1" || f.Channel != "chat" || f.Epoch != first.Epoch || f.Offset != 1 {
		t.Fatalf("subscribe reply %+v", f)
	}

	// Publish on the same connection, interleaved with receiving.
	for i := 1; i <= 5; i++ {
		wsSend(t, c, fmt.Sprintf(`{"id":"p%d","type":"publish","channel":"chat","data":{"n":%d}}`, i, i))
	}
	gotOK, gotMsg := 0, 0
	for gotOK < 5 || gotMsg < 5 {
		f := wsRead(t, c)
		switch f.Type {
		case "ok":
			gotOK++
			if f.id() != fmt.Sprintf(`"p%d"`, gotOK) || f.Offset != uint64(gotOK+1) || f.Time == 0 || f.Epoch != first.Epoch {
				t.Fatalf("publish reply %d: %+v", gotOK, f)
			}
		case "message":
			gotMsg++
			if f.Offset != uint64(gotMsg+1) || string(f.Data) != fmt.Sprintf(`{"n":%d}`, gotMsg) {
				t.Fatalf("message %d: %+v", gotMsg, f)
			}
		default:
			t.Fatalf("unexpected frame %+v", f)
		}
	}

	wsSend(t, c, `{"id":7,"type":"history","channel":"chat","after":2,"limit":2}`)
	f = wsRead(t, c)
	if f.Type != "ok" || f.id() != "7" || len(f.Messages) != 2 || f.Next != 4 {
		t.Fatalf("history reply %+v", f)
	}
	var env msg.Envelope
	if err := json.Unmarshal(f.Messages[0], &env); err != nil || env.Offset != 3 || string(env.Data) != `{"n":2}` {
		t.Fatalf("history message %s: %v", f.Messages[0], err)
	}

	wsPing(t, c, "x")

	wsSend(t, c, `{"id":8,"type":"unsubscribe","channel":"chat"}`)
	if f := wsRead(t, c); f.Type != "ok" || f.id() != "8" {
		t.Fatalf("unsubscribe reply %+v", f)
	}
	wsPublishREST(t, h, "chat", `{"after":"unsubscribe"}`)
	wsPing(t, c, "y") // the pong comes, and no message before it
	wsSend(t, c, `{"id":9,"type":"unsubscribe","channel":"chat"}`)
	if f := wsRead(t, c); f.Type != "error" || f.Code != "bad_request" || f.id() != "9" {
		t.Fatalf("second unsubscribe reply %+v", f)
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func TestWSCommandErrors(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{
		Hub:    hub.Config{MaxMessage: 1000, MaxChannels: 2},
		Server: server.Config{PublishRate: 0.001}, // one publish, then none for 1000 s
	})
	c := wsDial(t, h, "/v1/ws")
	cases := []struct {
		frame, id, code string
	}{
		{`{"id":1,"type":"dance"}`, "1", "bad_request"},
		{`{"type":"ping"}`, "", "bad_request"},
		{`{"id":null,"type":"ping"}`, "", "bad_request"},
		{`{"id":{"a":1},"type":"ping"}`, "", "bad_request"},
		{`{"id":2}`, "2", "bad_request"},
		{`{"id":3,"type":"subscribe","channel":"no spaces"}`, "3", "invalid_channel"},
		{`{"id":4,"type":"subscribe"}`, "4", "bad_request"},
		{`{"id":5,"type":"subscribe","channel":"a","epoch":"UPPER","offset":1}`, "5", "invalid_cursor"},
		{`{"id":6,"type":"subscribe","channel":"a","offset":-1}`, "6", "bad_request"},
		{`{"id":7,"type":"history","channel":"a","limit":0}`, "7", "bad_request"},
		{`{"id":8,"type":"publish","channel":"a"}`, "8", "invalid_json"},
		{`{"id":9,"type":"publish","channel":"a","data":"` + strings.Repeat("x", 1200) + `"}`, "9", "message_too_large"},
		{`{"id":"s1","type":"subscribe","channel":"a"}`, `"s1"`, ""},
		{`{"id":"s2","type":"subscribe","channel":"a"}`, `"s2"`, "bad_request"}, // already subscribed
		{`{"id":"s3","type":"subscribe","channel":"b"}`, `"s3"`, ""},
		{`{"id":"s4","type":"subscribe","channel":"c"}`, `"s4"`, "bad_request"}, // over MaxChannels
	}
	for _, tc := range cases {
		wsSend(t, c, tc.frame)
		f := wsRead(t, c)
		if tc.code == "" {
			if f.Type != "ok" || f.id() != tc.id {
				t.Fatalf("%s: got %+v, want ok", tc.frame, f)
			}
			continue
		}
		if f.Type != "error" || f.Code != tc.code || f.id() != tc.id || f.Message == "" {
			t.Fatalf("%.80s: got %+v, want error %s with id %q", tc.frame, f, tc.code, tc.id)
		}
	}
	wsPing(t, c, "still-open")

	// The rate limit, on a connection of its own (failed publishes count).
	c = wsDial(t, h, "/v1/ws")
	wsSend(t, c, `{"id":"p1","type":"publish","channel":"z","data":1}`)
	if f := wsRead(t, c); f.Type != "ok" {
		t.Fatalf("first publish: %+v", f)
	}
	wsSend(t, c, `{"id":"p2","type":"publish","channel":"z","data":2}`)
	if f := wsRead(t, c); f.Type != "error" || f.Code != "rate_limited" || f.id() != `"p2"` {
		t.Fatalf("second publish: %+v", f)
	}
	wsPing(t, c, "still-open")
}

func TestWSBadFramesClose(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Hub: hub.Config{MaxMessage: 1000}})
	watcher := wsDial(t, h, "/v1/ws")
	wsSend(t, watcher, `{"id":1,"type":"subscribe","channel":"w"}`)
	wsRead(t, watcher)
	cases := []struct {
		name string
		typ  websocket.MessageType
		data []byte
		want websocket.StatusCode
	}{
		{"not JSON", websocket.MessageText, []byte("hello"), websocket.StatusUnsupportedData},
		{"JSON array", websocket.MessageText, []byte(`[{"id":1}]`), websocket.StatusUnsupportedData},
		{"JSON string", websocket.MessageText, []byte(`"ping"`), websocket.StatusUnsupportedData},
		{"truncated object", websocket.MessageText, []byte(`{"id":1,"type":"ping"`), websocket.StatusUnsupportedData},
		{"binary", websocket.MessageBinary, []byte(`{"id":1,"type":"ping"}`), websocket.StatusUnsupportedData},
		{"invalid UTF-8", websocket.MessageText, []byte("{\"id\":1,\"type\":\"\xff\"}"), websocket.StatusInvalidFramePayloadData},
		{"truncated UTF-8", websocket.MessageText, []byte("{\"id\":1}\xe2\x82"), websocket.StatusInvalidFramePayloadData},
		{"over the frame limit", websocket.MessageText, []byte(`{"id":1,"type":"publish","channel":"a","data":"` + strings.Repeat("x", 1000+4096) + `"}`), websocket.StatusMessageTooBig},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := wsDial(t, h, "/v1/ws")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Write(ctx, tc.typ, tc.data); err != nil {
				t.Fatal(err)
			}
			wsExpectClose(t, c, tc.want)
			// Others are unaffected.
			p := wsPublishREST(t, h, "w", fmt.Sprintf(`{"case":%d}`, i))
			if f := wsRead(t, watcher); f.Type != "message" || f.Offset != p.Offset {
				t.Fatalf("watcher got %+v, want offset %d", f, p.Offset)
			}
		})
	}
}

func TestWSInvalidSubscribeFlood(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	watcher := wsDial(t, h, "/v1/ws")
	wsSend(t, watcher, `{"id":1,"type":"subscribe","channel":"w"}`)
	wsRead(t, watcher)

	c := wsDial(t, h, "/v1/ws")
	const n = 10000
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for i := range n {
			if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"id":%d,"type":"subscribe","channel":"bad channel %d"}`, i, i)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	got := 0
	for got < n {
		f, err := wsReadE(c)
		if err != nil {
			// Allowed: cut as a slow consumer if replies outran our reading.
			if websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
				t.Fatalf("after %d replies: %v", got, err)
			}
			break
		}
		if f.Type != "error" || f.Code != "invalid_channel" || f.id() != fmt.Sprint(got) {
			t.Fatalf("reply %d: %+v", got, f)
		}
		got++
		if got%2500 == 0 {
			p := wsPublishREST(t, h, "w", fmt.Sprintf(`{"at":%d}`, got))
			if f := wsRead(t, watcher); f.Type != "message" || f.Offset != p.Offset {
				t.Fatalf("watcher got %+v, want offset %d", f, p.Offset)
			}
		}
	}
	if err := <-errc; err != nil && got == n {
		t.Fatal(err)
	}
	t.Logf("%d of %d error replies", got, n)
	if got == n {
		wsPing(t, c, "after-flood")
	}
	wsPing(t, watcher, "watcher")
}

func TestWSOriginAndCap(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{
		AllowedOrigins: []string{"https://good.example"}, MaxWebSockets: 2,
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(origin string) (*websocket.Conn, *http.Response, error) {
		hdr := http.Header{}
		if origin != "" {
			hdr.Set("Origin", origin)
		}
		return websocket.Dial(ctx, "ws://"+h.Addr+"/v1/ws", &websocket.DialOptions{HTTPHeader: hdr})
	}
	_, resp, err := dial("https://evil.example")
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bad origin: %v %v", resp, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"forbidden"`) {
		t.Fatalf("bad origin body %s", body)
	}
	a, _, err := dial("https://good.example")
	if err != nil {
		t.Fatal(err)
	}
	defer a.CloseNow()
	b, _, err := dial("")
	if err != nil {
		t.Fatal(err)
	}
	defer b.CloseNow()
	_, resp, err = dial("")
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection over a cap of 2: %v %v", resp, err)
	}
	resp.Body.Close()
	wsPing(t, a, "a")
	a.Close(websocket.StatusNormalClosure, "")
	// The slot frees once the server has seen a go.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, resp, err := dial("")
		if err == nil {
			wsPing(t, c, "c")
			c.Close(websocket.StatusNormalClosure, "")
			break
		}
		if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after a close: %v %v", resp, err)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	b.Close(websocket.StatusNormalClosure, "")

	// Plain GET without upgrade.
	r2, err := http.Get(h.URL + "/v1/ws")
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusBadRequest {
		t.Fatalf("GET without upgrade: %s", r2.Status)
	}
}

func TestWSEcho(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Hub: hub.Config{MaxMessage: 1000}})
	c := wsDial(t, h, "/v1/echo")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs := []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte("héllo")},
		{websocket.MessageBinary, []byte{0, 1, 2, 0xff}},
		{websocket.MessageText, []byte("")},
		{websocket.MessageText, []byte(strings.Repeat("é", 2500))}, // 5000 bytes, fragmented by nobody
	}
	for _, m := range msgs {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range msgs {
		typ, b, err := c.Read(ctx)
		if err != nil || typ != m.typ || string(b) != string(m.data) {
			t.Fatalf("echo of %v %.20q: %v %.20q %v", m.typ, m.data, typ, b, err)
		}
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("ok\xc0\xaf")); err != nil {
		t.Fatal(err)
	}
	wsExpectClose(t, c, websocket.StatusInvalidFramePayloadData)

	c = wsDial(t, h, "/v1/echo")
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 1000+4096+1)); err != nil {
		t.Fatal(err)
	}
	wsExpectClose(t, c, websocket.StatusMessageTooBig)
}

func TestWSShutdown(t *testing.T) {
	hubtest.CheckLeaks(t)
	h, err := hubtest.StartE(&hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var conns []*websocket.Conn
	for i := range 5 {
		path := "/v1/ws"
		if i == 4 {
			path = "/v1/echo"
		}
		c := wsDial(t, h, path)
		if i < 4 {
			wsSend(t, c, `{"id":1,"type":"subscribe","channel":"s"}`)
			wsRead(t, c)
		}
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { wsExpectClose(t, c, websocket.StatusGoingAway) })
	}
	h.Stop(t)
	wg.Wait()
}

func TestWSResumeWhilePublishing(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	var last msg.Published
	for i := 1; i <= 50; i++ {
		last = wsPublishREST(t, h, "r", fmt.Sprintf(`{"n":%d}`, i))
	}
	// A publisher keeps going while we resume from offset 20.
	pub := wsDial(t, h, "/v1/ws")
	stop := make(chan struct{})
	var pubDone sync.WaitGroup
	pubDone.Go(func() {
		ctx := context.Background()
		for i := 51; i <= 300; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := pub.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"id":%d,"type":"publish","channel":"r","data":{"n":%d}}`, i, i)); err != nil {
				return
			}
		}
	})
	// Drain the publisher's replies so it is never cut.
	var drainDone sync.WaitGroup
	drainDone.Go(func() {
		for {
			if _, _, err := pub.Read(context.Background()); err != nil {
				return
			}
		}
	})
	c := wsDial(t, h, "/v1/ws")
	wsSend(t, c, fmt.Sprintf(`{"id":"r","type":"subscribe","channel":"r","epoch":"%s","offset":20}`, last.Epoch))
	f := wsRead(t, c)
	if f.Type != "ok" || f.Epoch != last.Epoch || f.Offset < 50 {
		t.Fatalf("subscribe reply %+v", f)
	}
	for want := uint64(21); want <= 300; want++ {
		f := wsRead(t, c)
		if f.Type != "message" || f.Offset != want || string(f.Data) != fmt.Sprintf(`{"n":%d}`, want) {
			t.Fatalf("want offset %d, got %+v", want, f)
		}
	}
	close(stop)
	pubDone.Wait()
	pub.Close(websocket.StatusNormalClosure, "")
	drainDone.Wait()
	wsPing(t, c, "end") // nothing after 300 but the pong
}

// TestWSSlowConsumer: a subscriber that stops reading is cut with 1013 while
// another keeps receiving; it comes back with its cursor and gets the rest,
// once, in order.
func TestWSSlowConsumer(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{
		Hub:    hub.Config{QueueMessages: 64},
		Memory: memory.Config{HistorySize: 2000},
		// The publisher waits for the fast subscriber after each message:
		// without write coalescing, so that waits for no timer.
		Server: server.Config{WriteDelay: -1},
	})
	fast := wsDial(t, h, "/v1/ws")
	slow := wsDial(t, h, "/v1/ws")
	for _, c := range []*websocket.Conn{fast, slow} {
		wsSend(t, c, `{"id":1,"type":"subscribe","channel":"s"}`)
		if f := wsRead(t, c); f.Type != "ok" {
			t.Fatalf("subscribe: %+v", f)
		}
	}
	// The fast one reads everything as it comes; the publisher waits for
	// it after each message, so only the slow one falls behind.
	fastGot := make(chan uint64, 1)
	var fastWG sync.WaitGroup
	fastWG.Go(func() {
		defer close(fastGot)
		for want := uint64(1); want <= 1500; want++ {
			f, err := wsReadE(fast)
			if err != nil || f.Type != "message" || f.Offset != want {
				t.Errorf("fast subscriber wanted %d: %+v %v", want, f, err)
				return
			}
			fastGot <- f.Offset
		}
	})
	publishAndWait := func(want uint64) {
		wsPublishREST(t, h, "s", `{"pad":"`+strings.Repeat("x", 8000)+`"}`)
		if got, ok := <-fastGot; !ok || got != want {
			t.Fatalf("fast subscriber: got %d (%v), want %d", got, ok, want)
		}
	}
	// Publish big messages until the hub has cut the slow one (its socket
	// buffers fill, then its queue), then some more.
	n := uint64(1)
	for ; h.Hub.Stats().SlowCuts == 0; n++ {
		if n > 1400 {
			t.Fatal("slow consumer never cut")
		}
		publishAndWait(n)
	}
	for ; n <= 1500; n++ {
		publishAndWait(n)
	}
	fastWG.Wait()
	// Now the slow one reads: what was in its socket, then 1013.
	var cur msg.Position
	for {
		f, err := wsReadE(slow)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
				t.Fatalf("slow consumer ended with %v, want 1013", err)
			}
			break
		}
		if f.Type != "message" || f.Offset != cur.Offset+1 {
			t.Fatalf("slow consumer got %+v after offset %d", f, cur.Offset)
		}
		cur = msg.Position{Epoch: f.Epoch, Offset: f.Offset}
	}
	t.Logf("slow consumer read up to offset %d before 1013", cur.Offset)
	// Resume with the cursor: everything after it, once, in order.
	again := wsDial(t, h, "/v1/ws")
	wsSend(t, again, fmt.Sprintf(`{"id":2,"type":"subscribe","channel":"s","epoch":"%s","offset":%d}`, cur.Epoch, cur.Offset))
	if f := wsRead(t, again); f.Type != "ok" || f.Offset != 1500 {
		t.Fatalf("resubscribe: %+v", f)
	}
	for want := cur.Offset + 1; want <= 1500; want++ {
		f := wsRead(t, again)
		if f.Type != "message" || f.Offset != want {
			t.Fatalf("resumed: want offset %d, got %+v", want, f)
		}
	}
	wsPing(t, again, "done")
}

func TestWSPingTimeout(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{PingInterval: 500 * time.Millisecond}})
	// A client that answers pings stays.
	live := wsDial(t, h, "/v1/ws")
	var liveWG sync.WaitGroup
	liveErr := make(chan error, 1)
	liveWG.Go(func() {
		_, _, err := live.Read(context.Background()) // reading answers pings
		liveErr <- err
	})
	// A client that never reads never answers a ping: the hub drops it.
	deaf := wsDial(t, h, "/v1/ws")
	deadline := time.Now().Add(10 * time.Second)
	for h.Hub.Stats().Sessions > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("silent peer still connected: %+v", h.Hub.Stats())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	_ = deaf
	select {
	case err := <-liveErr:
		t.Fatalf("live client ended: %v", err)
	default:
	}
	live.Close(websocket.StatusNormalClosure, "")
	liveWG.Wait()
	if err := <-liveErr; websocket.CloseStatus(err) != websocket.StatusNormalClosure && !errors.Is(err, context.Canceled) {
		t.Logf("live client read ended with %v", err)
	}
}

func TestWSAuth(t *testing.T) {
	hubtest.CheckLeaks(t)
	secret := []byte("ws-test-secret")
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{JWTSecret: secret}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://"+h.Addr+"/v1/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %v %v", resp, err)
	}
	resp.Body.Close()
	tok, err := server.NewToken(secret, server.Claims{
		RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Subscribe:        []string{"chat:*"}, Publish: []string{"chat:out"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := websocket.Dial(ctx, "ws://"+h.Addr+"/v1/ws?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for _, tc := range []struct{ frame, want string }{
		{`{"id":1,"type":"subscribe","channel":"chat:in"}`, "ok"},
		{`{"id":2,"type":"subscribe","channel":"news"}`, "forbidden"},
		{`{"id":3,"type":"history","channel":"news"}`, "forbidden"},
		{`{"id":4,"type":"publish","channel":"chat:in","data":1}`, "forbidden"},
		{`{"id":5,"type":"publish","channel":"chat:out","data":1}`, "ok"},
	} {
		wsSend(t, c, tc.frame)
		f := wsRead(t, c)
		if got := f.Type; got == "error" {
			got = f.Code
			if got != tc.want {
				t.Fatalf("%s: got %+v", tc.frame, f)
			}
		} else if got != tc.want {
			t.Fatalf("%s: got %+v", tc.frame, f)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}
