package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/msg"
)

var explicitTransports = []client.Transport{client.WebSocket, client.SSE, client.Stream, client.Poll}

// TestClientTransports: each transport, chosen explicitly, against a real
// hub: subscribe to two channels, publish, receive in order, read history,
// and resume from the cursor with no loss and no duplicate.
func TestClientTransports(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	for _, tr := range explicitTransports {
		t.Run(string(tr), func(t *testing.T) {
			c := dialClient(t, h.URL, fastOpts(tr))
			a, b := "t-"+string(tr)+"-a", "t-"+string(tr)+"-b"
			s := subscribe(t, c, []string{a, b}, nil)
			if got := s.Transport(); got != tr {
				t.Fatalf("transport %s, want %s", got, tr)
			}
			publishN(t, c, a, 1, 5)
			publishN(t, c, b, 1, 3)
			expectMessages(t, s, map[string][2]int{a: {1, 5}, b: {1, 3}})
			cur := s.Cursor()
			if cur[a].Offset != 5 || cur[b].Offset != 3 || !msg.ValidEpoch(cur[a].Epoch) {
				t.Fatalf("cursor %v", cur)
			}
			s.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			hist, err := c.History(ctx, a, 2, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(hist.Messages) != 3 || hist.Messages[0].Offset != 3 || hist.Latest != 5 {
				t.Fatalf("history %+v", hist)
			}

			// Published while nobody listens; resumed from the cursor.
			publishN(t, c, a, 6, 8)
			s2 := subscribe(t, c, []string{a, b}, &client.SubscribeOptions{Cursor: cur})
			publishN(t, c, b, 4, 4)
			expectMessages(t, s2, map[string][2]int{a: {6, 8}, b: {4, 4}})
		})
	}
}

// TestClientConcurrentPublish: many goroutines publish through one client
// (one WebSocket, or HTTP); a subscriber gets every message once, in
// offset order, with no holes.
func TestClientConcurrentPublish(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	for _, tr := range []client.Transport{client.WebSocket, client.SSE} {
		t.Run(string(tr), func(t *testing.T) {
			c := dialClient(t, h.URL, fastOpts(tr))
			ch := "conc-" + string(tr)
			s := subscribe(t, c, []string{ch}, nil)
			const workers, each = 8, 50
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Go(func() {
					for i := range each {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						_, err := c.Publish(ctx, ch, json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)))
						cancel()
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			for off := uint64(1); off <= workers*each; off++ {
				ev := nextEvent(t, s)
				if ev.Message == nil || ev.Message.Offset != off {
					t.Fatalf("event %+v, want offset %d", ev, off)
				}
			}
		})
	}
}
