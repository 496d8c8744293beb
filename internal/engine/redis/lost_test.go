package redis

import (
	"context"
	"strconv"
	"testing"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hub/enginetest"
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
	enginetest.ReadInOrder(t, s, uint64(total))
}
