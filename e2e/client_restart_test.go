package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/msg"
)

func hubPublish(t *testing.T, h *hubtest.Hub, ch string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := h.Hub.Publish(context.Background(), ch, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatalf("publish %s #%d: %v", ch, i, err)
		}
	}
}

// TestClientHubRestartSurfacesGap: the hub (memory engine) restarts on
// the same port under a subscribed client. The channel comes back with a
// new epoch and its history is gone: every transport reconnects and hands
// the caller a gap notice for the new epoch, then the new messages.
func TestClientHubRestartSurfacesGap(t *testing.T) {
	hubtest.CheckLeaks(t)
	for _, tr := range append(explicitTransports, client.Auto) {
		t.Run(string(tr), func(t *testing.T) {
			h1, err := hubtest.StartE(&hubtest.Options{})
			if err != nil {
				t.Fatal(err)
			}
			addr := h1.Addr
			c := dialClient(t, h1.URL, fastOpts(tr))
			s := subscribe(t, c, []string{"restart"}, nil)
			hubPublish(t, h1, "restart", 1, 3)
			expectMessages(t, s, map[string][2]int{"restart": {1, 3}})
			oldEpoch := s.Cursor()["restart"].Epoch

			h1.Stop(t)
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("listen again on %s: %v", addr, err)
			}
			h2 := hubtest.Start(t, &hubtest.Options{Listener: ln})
			hubPublish(t, h2, "restart", 1, 2)

			ev := nextEvent(t, s)
			if ev.Gap == nil {
				t.Fatalf("first event after the restart is %+v, want a gap", ev.Message)
			}
			if ev.Gap.Epoch == oldEpoch || ev.Gap.Channel != "restart" || ev.Gap.Next != 1 {
				t.Fatalf("gap %+v (old epoch %s)", *ev.Gap, oldEpoch)
			}
			expectMessages(t, s, map[string][2]int{"restart": {1, 2}})
			if cur := s.Cursor()["restart"]; cur.Epoch != ev.Gap.Epoch || cur.Offset != 2 {
				t.Fatalf("cursor %+v", cur)
			}
			s.Close()
			c.Close()
		})
	}
}

// TestClientDroppedConnectionResumes: a front between client and hub drops
// every connection, again and again, while messages are published. Every
// transport resumes from its cursor: each message arrives once, in order.
func TestClientDroppedConnectionResumes(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	for _, tr := range append(explicitTransports, client.Auto) {
		t.Run(string(tr), func(t *testing.T) {
			front := startTCPFront(t, h.Addr)
			opts := fastOpts(tr)
			var mu sync.Mutex
			connects := 0
			connected := make(chan struct{}, 64)
			opts.OnConnect = func(client.Transport) {
				mu.Lock()
				connects++
				mu.Unlock()
				select {
				case connected <- struct{}{}:
				default:
				}
			}
			c := dialClient(t, front.URL(), opts)
			a, b := "drop-"+string(tr)+"-a", "drop-"+string(tr)+"-b"
			s := subscribe(t, c, []string{a, b}, nil)
			<-connected
			const rounds, per = 5, 20
			for r := range rounds {
				hubPublish(t, h, a, r*per+1, r*per+per/2)
				// A long poll may be between two requests: the next is cut.
				if tr == client.Poll {
					front.cutNext(t)
				} else if front.cutAll() == 0 {
					t.Fatalf("round %d: nothing to cut", r)
				}
				hubPublish(t, h, a, r*per+per/2+1, (r+1)*per)
				hubPublish(t, h, b, r+1, r+1)
				// Reconnected (the next OnConnect) before the next cut. A
				// long poll may be cut between two polls, when there is
				// nothing to reconnect: each poll is a new request anyway.
				if tr == client.Poll {
					continue
				}
				select {
				case <-connected:
				case <-time.After(15 * time.Second):
					t.Fatalf("round %d: no reconnect", r)
				}
			}
			expectMessages(t, s, map[string][2]int{a: {1, rounds * per}, b: {1, rounds}})
			mu.Lock()
			n := connects
			mu.Unlock()
			if n < rounds+1 && tr != client.Poll {
				t.Fatalf("%d connects for %d cuts", n, rounds)
			}
			cur := s.Cursor()
			if cur[a].Offset != rounds*per || cur[b].Offset != rounds || !msg.ValidEpoch(cur[a].Epoch) {
				t.Fatalf("cursor %v", cur)
			}
		})
	}
}
