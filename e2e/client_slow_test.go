package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/msg"
)

// TestClientSlowConsumer: a subscriber that stops reading while 16 MiB are
// published overflows its hub queue (256 KiB) and is cut as a slow
// consumer; the client reconnects from its cursor. Whatever the hub still
// has arrives once and in order, and whatever it trimmed is announced by a
// gap notice: offsets only ever jump right after a gap whose next is the
// new offset.
func TestClientSlowConsumer(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{
		Hub:    hub.Config{QueueBytes: 256 << 10, QueueMessages: 256},
		Memory: memory.Config{HistorySize: 256},
	})
	payload := strings.Repeat("x", 8<<10)
	for _, tr := range []client.Transport{client.WebSocket, client.SSE, client.Stream} {
		t.Run(string(tr), func(t *testing.T) {
			opts := fastOpts(tr)
			var mu sync.Mutex
			var reasons []string
			opts.OnDisconnect = func(_ client.Transport, err error) {
				mu.Lock()
				reasons = append(reasons, err.Error())
				mu.Unlock()
			}
			c := dialClient(t, h.URL, opts)
			ch := "slow-" + string(tr)
			s := subscribe(t, c, []string{ch}, &client.SubscribeOptions{Buffer: 1})
			const n = 2000
			for i := 1; i <= n; i++ {
				if _, err := h.Hub.Publish(context.Background(), ch, json.RawMessage(fmt.Sprintf(`{"n":%d,"p":%q}`, i, payload))); err != nil {
					t.Fatal(err)
				}
			}
			var last uint64
			var gapNext uint64
			gaps := 0
			for last < n {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				ev, err := s.Next(ctx)
				cancel()
				if err != nil {
					t.Fatalf("Next after offset %d: %v", last, err)
				}
				if ev.Gap != nil {
					gaps++
					gapNext = ev.Gap.Next
					continue
				}
				off := ev.Message.Offset
				switch {
				case off == last+1:
				case off > last+1 && off == gapNext:
				default:
					t.Fatalf("offset %d after %d with no gap announcing it (last gap next=%d)", off, last, gapNext)
				}
				last = off
			}
			mu.Lock()
			defer mu.Unlock()
			slow := 0
			for _, r := range reasons {
				if strings.Contains(r, msg.CloseSlow.String()) || strings.Contains(r, "ended the stream") {
					slow++
				}
			}
			t.Logf("%s: %d gaps, %d disconnects: %.200v", tr, gaps, len(reasons), reasons)
			if slow == 0 || gaps == 0 {
				t.Fatalf("the subscriber was never cut as slow (%d gaps, disconnects %v)", gaps, reasons)
			}
		})
	}
}
