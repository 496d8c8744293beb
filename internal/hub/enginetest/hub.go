package enginetest

import (
	"context"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
)

// testHubFillsLostDelivery runs a hub over the engine: a session gets
// every offset of a channel once, in order and without a gap, while
// another instance publishes and the store's delivery is interrupted
// (when it can be) mid-stream. What delivery missed, the hub reads
// back from history on Handlers.Lost.
func testHubFillsLostDelivery(t *testing.T, e *env) {
	h, err := hub.New(bg, hub.Config{Engine: e.store.NewEngine(t, e.cfg)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(bg)
	pub := e.engine()
	ch := e.channels(1)[0]
	s, err := h.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if _, err := s.Subscribe(bg, ch, hub.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	const total = 150
	for i := 1; i <= total; i++ {
		publish(t, pub, ch, `1`)
		if i == 50 && e.store.DropDelivery != nil {
			e.store.DropDelivery(t)
		}
	}
	ReadInOrder(t, s, total)
}

// ReadInOrder reads s until it has had offsets 1…total of its one channel,
// each once and in order, and fails on a gap (history held everything),
// an offset out of order, or 30 s without getting there (a hang is the
// bug).
func ReadInOrder(t *testing.T, s *hub.Session, total uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last uint64
	for last < total {
		items, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("after offset %d: %v", last, err)
		}
		for _, it := range items {
			switch {
			case it.Gap != nil:
				t.Fatalf("gap %+v after offset %d: history held everything", *it.Gap, last)
			case it.Pub != nil && it.Pub.Offset != last+1:
				t.Fatalf("offset %d after %d", it.Pub.Offset, last)
			case it.Pub != nil:
				last = it.Pub.Offset
			}
		}
	}
}
