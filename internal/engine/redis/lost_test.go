package redis

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
)

// TestPubSubKilledMidStream: Redis drops the hub's pub/sub connection
// (CLIENT KILL TYPE pubsub) twice while messages are published; what was
// published while it was down is filled from history when the engine
// reports the loss. The subscriber gets every offset once, in order, and
// no gap.
func TestPubSubKilledMidStream(t *testing.T) {
	t.Parallel()
	srv, _, h := startHub(t, Config{})
	ctx := context.Background()
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(ctx, "k", hub.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	// The publisher kills the connection at 100, then again at the
	// first publication after the engine has reconnected (a kill that
	// finds no connection closes nothing), then publishes 100 more.
	published := make(chan uint64, 1)
	go func() {
		kills, i := 0, uint64(0)
		var stopAt uint64
		for ; stopAt == 0 || i < stopAt; i++ {
			if i > 3000 {
				t.Error("the engine never reconnected")
				break
			}
			if _, err := h.Publish(ctx, "k", []byte(strconv.FormatUint(i+1, 10))); err != nil {
				t.Error(err)
				break
			}
			if i+1 >= 100 && kills < 2 && srv.KillPubSub() > 0 {
				if kills++; kills == 2 {
					stopAt = i + 100
				}
			}
		}
		published <- i
	}()
	total := <-published
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last uint64
	for last < total {
		items, err := s.Next(rctx)
		if err != nil {
			t.Fatalf("after offset %d: %v", last, err)
		}
		for _, it := range items {
			switch {
			case it.Gap != nil:
				t.Fatalf("gap %+v after offset %d: history held everything", *it.Gap, last)
			case it.Pub != nil:
				if it.Pub.Offset != last+1 {
					t.Fatalf("offset %d after %d", it.Pub.Offset, last)
				}
				last = it.Pub.Offset
			}
		}
	}
	// The last messages came after a reconnect, which the engine
	// reports as a loss before it delivers anything on it.
	if n := h.Stats().Lost; n == 0 {
		t.Fatal("the engine never reported a loss")
	}
}
