package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// TestRedisDown: while Redis is down, Publish fails within the engine
// timeout and the hub answers unavailable; once it is back, publishing
// goes on and the subscription is back in place (reported as lost).
func TestRedisDown(t *testing.T) {
	t.Parallel()
	srv, e, h := startHub(t, Config{Timeout: 500 * time.Millisecond})
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
	_, err := h.Publish(ctx, "d", []byte(`2`))
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

// TestSubscribersToldWhileRedisDown: Redis stopped for longer than the
// grace closes the hub's subscribed sessions with 1011 (reconnect and
// resume), leaves a publisher's session alone, answers a subscribe with
// 503 until Redis is back, and then lets the client resume from its
// cursor. Redis ran without persistence: the resume is told so (a gap to
// the new epoch), and offsets start again.
func TestSubscribersToldWhileRedisDown(t *testing.T) {
	t.Parallel()
	srv, e, h := startHub(t, Config{Timeout: 500 * time.Millisecond, DownGrace: 100 * time.Millisecond})
	ctx := context.Background()
	sub, _ := h.NewSession()
	defer sub.Release()
	pubOnly, _ := h.NewSession()
	defer pubOnly.Release()
	if _, err := sub.Subscribe(ctx, "d", hub.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	p1, err := h.Publish(ctx, "d", []byte(`1`))
	if err != nil {
		t.Fatal(err)
	}
	if items, err := sub.Next(ctx); err != nil || len(items) != 1 {
		t.Fatalf("before the stop: %v %v", items, err)
	}
	back := srv.StopFor(2 * time.Second)
	select {
	case <-sub.Done():
	case <-time.After(30 * time.Second): // a hang is the bug, not slowness
		t.Fatal("the subscriber was never told that Redis is down")
	}
	if code := msg.CloseCodeOf(sub.Err()); code != hub.CloseEngineDown || !code.Reconnect() {
		t.Fatalf("closed with %v, want a reconnect-able %v", sub.Err(), hub.CloseEngineDown)
	}
	if pubOnly.Err() != nil {
		t.Fatalf("a session with no channel was closed: %v", pubOnly.Err())
	}
	if !h.Stats().EngineDown {
		t.Fatal("the hub does not know that the engine is down")
	}
	again, _ := h.NewSession()
	defer again.Release()
	from := &msg.Position{Epoch: p1.Epoch, Offset: p1.Offset}
	var me *msg.Error
	if _, err := again.Subscribe(ctx, "d", hub.SubscribeOptions{From: from}); !errors.As(err, &me) || me.Code != msg.CodeUnavailable {
		t.Fatalf("subscribe while Redis is down: %v, want unavailable", err)
	}
	<-back
	// The engine reconnects with backoff; each try here waits for a
	// real Redis round trip.
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := again.Subscribe(ctx, "d", hub.SubscribeOptions{From: from})
		if err == nil {
			break
		}
		if !errors.As(err, &me) || me.Code != msg.CodeUnavailable || time.Now().After(deadline) {
			t.Fatalf("subscribe after Redis came back: %v", err)
		}
		e.History(ctx, "d", hub.HistoryQuery{})
	}
	p, err := h.Publish(ctx, "d", []byte(`2`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Offset != 1 || p.Epoch == p1.Epoch {
		t.Fatalf("after a restart without persistence: %+v, want offset 1 of a new epoch", p.Envelope)
	}
	var items []hub.Item
	for err == nil && len(items) < 2 {
		var more []hub.Item
		more, err = again.Next(ctx) // valid until the next call: copied
		items = append(items, more...)
	}
	if err != nil || items[0].Gap == nil || items[0].Gap.Next != 1 || items[1].Pub == nil || items[1].Pub.Offset != 1 {
		t.Fatalf("resumed: %+v %v, want a gap to the new epoch, then offset 1", items, err)
	}
	if h.Stats().EngineDown || h.Stats().EngineDowns != 1 {
		t.Fatalf("stats %+v, want one down, now up", h.Stats())
	}
}
