package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/redistest"
	"github.com/duplexhq/duplex/msg"
)

// TestRedisDown: while Redis is down, Publish fails within the engine
// timeout and the hub answers unavailable; once it is back, publishing
// goes on and the subscription is back in place (reported as lost).
func TestRedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	e, err := New(Config{URL: srv.URL(), Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(context.Background(), hub.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(context.Background())
	ctx := context.Background()
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(ctx, "d", hub.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(ctx, "d", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	back := srv.StopFor(time.Second)
	_, err = h.Publish(ctx, "d", []byte(`2`))
	var me *msg.Error
	if !errors.As(err, &me) || me.Code != msg.CodeUnavailable {
		t.Fatalf("Publish with Redis down: %v, want unavailable", err)
	}
	<-back
	var p *hub.Publication
	for p == nil { // the client's pool reconnects on the next call
		if p, err = h.Publish(ctx, "d", []byte(`3`)); err != nil && !errors.As(err, &me) {
			t.Fatal(err)
		}
	}
	if p.Offset != 1 {
		// Redis came back without persistence: a new epoch.
		t.Fatalf("first publication after the restart: offset %d", p.Offset)
	}
	deadline := time.Now().Add(20 * time.Second)
	for h.Stats().Lost == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the hub was never told that deliveries may have been lost")
		}
		time.Sleep(10 * time.Millisecond) // polling a counter: no event to wait on
	}
	if e.Stats().Reconnects.Load() == 0 || e.Stats().Errors.Load() == 0 {
		t.Fatalf("reconnects %d, errors %d", e.Stats().Reconnects.Load(), e.Stats().Errors.Load())
	}
}
