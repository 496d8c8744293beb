package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/coder/websocket"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
)

// downEngine is the memory engine whose Down and Up the test calls, as
// the Redis engine does when its pub/sub connection stays down.
type downEngine struct {
	*memory.Engine
	h hub.Handlers
}

func (e *downEngine) Start(ctx context.Context, h hub.Handlers) error {
	e.h = h
	return e.Engine.Start(ctx, h)
}

// TestEngineDownTellsSubscribers: when the engine goes down, a waiting
// long poll answers 503, a WebSocket subscriber is closed with 1011 and
// an SSE stream ends, each a signal to retry with the cursor; polls
// answer 503 until the engine is back.
func TestEngineDownTellsSubscribers(t *testing.T) {
	hubtest.CheckLeaks(t)
	eng := &downEngine{Engine: memory.New(memory.Config{})}
	h := hubtest.Start(t, &hubtest.Options{Engine: eng})
	c := testClient(t)
	ctx := context.Background()

	ws, _, err := websocket.Dial(ctx, "ws://"+h.Addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	wsSend(t, ws, `{"id":1,"type":"subscribe","channel":"d"}`)
	if f := wsRead(t, ws); f.Type != "ok" {
		t.Fatalf("subscribe: %+v", f)
	}
	sse := get(t, ctx, c, h.URL+"/v1/sse?channel=d")
	defer sse.Body.Close()
	polled := make(chan *http.Response, 1)
	go func() {
		resp, err := c.Get(h.URL + "/v1/poll?channel=d&timeout=60s")
		if err != nil {
			t.Error(err)
		}
		polled <- resp
	}()
	waitSubscribers(t, h, "d", 3)

	eng.h.Down(errors.New("test: engine down"))
	if resp := <-polled; resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("waiting poll: %v, want 503", resp)
	} else {
		resp.Body.Close()
	}
	if _, err := wsReadE(ws); websocket.CloseStatus(err) != websocket.StatusInternalError {
		t.Fatalf("WebSocket: %v, want close 1011", err)
	}
	if _, err := io.ReadAll(sse.Body); err != nil {
		t.Fatalf("SSE stream: %v, want a clean end", err)
	}
	if resp, _ := do(t, "GET", h.URL+"/v1/poll?channel=d&timeout=0", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("poll while down: %d, want 503", resp.StatusCode)
	}
	eng.h.Up()
	if resp, _ := do(t, "GET", h.URL+"/v1/poll?channel=d&timeout=0", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("poll once back: %d, want 200", resp.StatusCode)
	}
}
