package e2e

import (
	"net/http"
	"sync"
	"testing"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/hubtest"
)

// TestClientAutoFallsBackWhenUpgradeRefused: a front that answers every
// WebSocket upgrade with 403 (or 404) makes Auto use SSE; one that also
// has no /v1/sse makes it use long polling. Either way messages flow,
// Publish goes over HTTP, and the client remembers the transport.
func TestClientAutoFallsBackWhenUpgradeRefused(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	for _, tc := range []struct {
		name    string
		status  int
		refused []string
		want    client.Transport
	}{
		{"403 to sse", http.StatusForbidden, nil, client.SSE},
		{"404 to sse", http.StatusNotFound, nil, client.SSE},
		{"no sse to poll", http.StatusForbidden, []string{"/v1/sse"}, client.Poll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := hubtest.ServeHandler(t, refuseUpgrades(h.Server.Handler(), tc.status, tc.refused...))
			c := dialClient(t, url, fastOpts(client.Auto))
			ch := "fb-" + string(tc.want) + "-" + http.StatusText(tc.status)[:3]
			s := subscribe(t, c, []string{ch}, nil)
			if got := s.Transport(); got != tc.want {
				t.Fatalf("subscription uses %s, want %s", got, tc.want)
			}
			publishN(t, c, ch, 1, 4)
			expectMessages(t, s, map[string][2]int{ch: {1, 4}})
			if got := c.Transport(); got != tc.want {
				t.Fatalf("client remembers %s, want %s", got, tc.want)
			}
		})
	}
}

// TestClientAutoFallsBackWhenWebSocketKeepsDying: the WebSocket upgrade
// succeeds but the connection is cut right after every open. Auto counts
// the failures after open, falls back to SSE after MaxFailures, delivers
// everything, and later subscriptions of the same client start on SSE
// without trying WebSocket again.
func TestClientAutoFallsBackWhenWebSocketKeepsDying(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	front := startTCPFront(t, h.Addr)
	front.cutUpgrades.Store(true)
	opts := fastOpts(client.Auto)
	opts.MaxFailures = 3
	var mu sync.Mutex
	var opened []client.Transport
	opts.OnConnect = func(tr client.Transport) {
		mu.Lock()
		opened = append(opened, tr)
		mu.Unlock()
	}
	c := dialClient(t, front.URL(), opts)
	s := subscribe(t, c, []string{"dying"}, nil)
	if got := s.Transport(); got != client.SSE {
		t.Fatalf("subscription uses %s, want sse", got)
	}
	publishN(t, c, "dying", 1, 3)
	expectMessages(t, s, map[string][2]int{"dying": {1, 3}})

	mu.Lock()
	ws := 0
	for _, tr := range opened {
		if tr == client.WebSocket {
			ws++
		}
	}
	mu.Unlock()
	if ws != 3 {
		t.Fatalf("WebSocket opened %d times before the fallback, want MaxFailures=3 (opens: %v)", ws, opened)
	}
	before := front.upgrades.Load()
	s2 := subscribe(t, c, []string{"dying2"}, nil)
	if got := s2.Transport(); got != client.SSE {
		t.Fatalf("second subscription uses %s, want sse", got)
	}
	publishN(t, c, "dying2", 1, 2)
	expectMessages(t, s2, map[string][2]int{"dying2": {1, 2}})
	if n := front.upgrades.Load() - before; n != 0 {
		t.Fatalf("%d WebSocket upgrades after the client learned WebSocket dies", n)
	}
}
