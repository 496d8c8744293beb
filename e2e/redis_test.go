package e2e

import (
	"context"
	"testing"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/engine/redis"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/redistest"
	"github.com/duplexhq/duplex/msg"
)

// redisHub starts an in-process hub whose engine is the Redis at url.
func redisHub(t *testing.T, url string) *hubtest.Hub {
	t.Helper()
	eng, err := redis.New(redis.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	return hubtest.Start(t, &hubtest.Options{Engine: eng})
}

// TestTwoHubsOneRedis: two hubs on one real redis-server share channels. A
// message published over HTTP on hub A reaches a subscriber of hub B, over
// SSE and over WebSocket, in order, without a gap (the subscriber came
// before the channel's first publication); and a subscriber that read part
// of a channel on hub A resumes on hub B with A's cursor, losing nothing
// and seeing nothing twice.
func TestTwoHubsOneRedis(t *testing.T) {
	hubtest.CheckLeaks(t)
	srv := redistest.Start(t, nil)
	a, b := redisHub(t, srv.URL()), redisHub(t, srv.URL())
	for _, tr := range []client.Transport{client.SSE, client.WebSocket} {
		t.Run(string(tr), func(t *testing.T) {
			ch := "two-hubs-" + string(tr)
			pubA := dialClient(t, a.URL, fastOpts(client.Poll)) // publishes with POST
			onB := subscribe(t, dialClient(t, b.URL, fastOpts(tr)), []string{ch}, nil)
			published := publishN(t, pubA, ch, 1, 5)
			for i := range 5 {
				ev := nextEvent(t, onB)
				if ev.Message == nil {
					t.Fatalf("event %d on hub B: %+v, want message %d", i, ev.Gap, i+1)
				}
				if dataN(t, ev.Message) != i+1 || ev.Message.Offset != published[i].Offset || ev.Message.Epoch != published[i].Epoch {
					t.Fatalf("hub B got %+v, hub A published %+v", ev.Message, published[i])
				}
			}
			onB.Close()

			// Read three on hub A, from the start, then resume on B.
			onA := subscribe(t, dialClient(t, a.URL, fastOpts(tr)), []string{ch},
				&client.SubscribeOptions{Cursor: msg.Cursor{ch: {Epoch: published[0].Epoch, Offset: 0}}})
			for i := range 3 {
				if ev := nextEvent(t, onA); ev.Message == nil || dataN(t, ev.Message) != i+1 {
					t.Fatalf("hub A replay %d: %+v %+v", i, ev.Message, ev.Gap)
				}
			}
			cursor := onA.Cursor()
			onA.Close()
			publishN(t, pubA, ch, 6, 8)
			resumed := subscribe(t, dialClient(t, b.URL, fastOpts(tr)), []string{ch}, &client.SubscribeOptions{Cursor: cursor})
			for want := 4; want <= 8; want++ {
				ev := nextEvent(t, resumed)
				if ev.Message == nil || dataN(t, ev.Message) != want {
					t.Fatalf("resumed on hub B with %v: got %+v %+v, want message %d", cursor, ev.Message, ev.Gap, want)
				}
			}
			// Nothing more is owed: the next event is the next publication.
			publishN(t, pubA, ch, 9, 9)
			if ev := nextEvent(t, resumed); ev.Message == nil || dataN(t, ev.Message) != 9 {
				t.Fatalf("after the resume: %+v %+v, want message 9", ev.Message, ev.Gap)
			}
			ctx := context.Background()
			info, err := b.Hub.Info(ctx, ch)
			if err != nil || info.Latest != 9 || info.Epoch != published[0].Epoch {
				t.Fatalf("hub B's view of %s: %+v %v", ch, info, err)
			}
		})
	}
}
