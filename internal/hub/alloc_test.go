package hub_test

import (
	"context"
	"testing"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
)

// TestPublishAllocsDoNotGrowWithSubscribers checks the promise that each
// publication is encoded once, not once per subscriber: publishing to a
// channel with 1,000 subscribed sessions allocates no more than publishing to
// one with a single session. Sessions are drained synchronously with
// TryNext, one batch per publication, so only the hub's own allocations are
// counted (no goroutine scheduling), and the result is exact.
func TestPublishAllocsDoNotGrowWithSubscribers(t *testing.T) {
	ctx := context.Background()
	allocs := func(n int) float64 {
		h, err := hub.New(ctx, hub.Config{Engine: memory.New(memory.Config{})})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Shutdown(ctx)
		sessions := make([]*hub.Session, n)
		for i := range sessions {
			s, err := h.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Release()
			if _, err := s.Subscribe(ctx, "chat", hub.SubscribeOptions{}); err != nil {
				t.Fatal(err)
			}
			sessions[i] = s
		}
		data := []byte(`{"text":"hi"}`)
		publish := func() {
			if _, err := h.Publish(ctx, "chat", data); err != nil {
				t.Fatal(err)
			}
			for _, s := range sessions {
				items, err := s.TryNext()
				if err != nil || len(items) != 1 {
					t.Fatalf("TryNext = %d items, %v; want 1 item", len(items), err)
				}
			}
		}
		// A new session's queue alternates between two slices (see
		// TryNext); each is allocated on first use and then kept. That is
		// once per session, not per publication: get it done first.
		publish()
		publish()
		got := testing.AllocsPerRun(200, publish)
		if st := h.Stats(); st.SlowCuts != 0 {
			t.Fatalf("%d sessions cut as slow", st.SlowCuts)
		}
		return got
	}
	one, many := allocs(1), allocs(1000)
	t.Logf("allocations per publication: %v with 1 subscriber, %v with 1000", one, many)
	if many > one {
		t.Errorf("publishing to 1000 subscribers allocates %v times, to 1 subscriber %v times: allocations grow with subscribers", many, one)
	}
}
