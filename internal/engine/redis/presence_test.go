package redis

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/redistest"
	"github.com/duplexhq/duplex/msg"
)

// presenceEvents collects the joins and leaves an engine hands its hub.
type presenceEvents struct {
	mu   sync.Mutex
	got  []string
	wake chan struct{}
}

func (p *presenceEvents) add(ev *hub.PresenceEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, ev.Type+":"+ev.Client+":"+ev.User)
	close(p.wake)
	p.wake = make(chan struct{})
}

func (p *presenceEvents) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second) // a broken engine, not a speed bound
	defer deadline.Stop()
	for {
		p.mu.Lock()
		ok, wake := slices.Contains(p.got, want), p.wake
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-wake:
		case <-deadline.C:
			t.Fatalf("no %s; got %v", want, p.got)
		}
	}
}

// waitCount waits until want has come n times.
func (p *presenceEvents) waitCount(t *testing.T, want string, n int) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second) // a broken engine, not a speed bound
	defer deadline.Stop()
	for {
		p.mu.Lock()
		got := 0
		for _, g := range p.got {
			if g == want {
				got++
			}
		}
		wake := p.wake
		p.mu.Unlock()
		if got == n {
			return
		}
		if got > n {
			t.Fatalf("%s came %d times, want %d", want, got, n)
		}
		select {
		case <-wake:
		case <-deadline.C:
			t.Fatalf("%s came %d times, want %d", want, got, n)
		}
	}
}

func startPresenceEngine(t *testing.T, url, prefix string, ttl time.Duration) (*Engine, *presenceEvents) {
	t.Helper()
	e, err := New(Config{URL: url, Prefix: prefix, PresenceTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	ev := &presenceEvents{wake: make(chan struct{})}
	if err := e.Start(context.Background(), hub.Handlers{Presence: ev.add}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e, ev
}

// TestPresenceExpiresWithItsEngine: an engine that stops without leaving
// (a crash, as far as Redis can tell) has its members swept by another
// engine refreshing the channel, which announces their leaves.
func TestPresenceExpiresWithItsEngine(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	ctx := context.Background()
	const ttl = 800 * time.Millisecond
	a, _ := startPresenceEngine(t, srv.URL(), "x", ttl)
	b, bev := startPresenceEngine(t, srv.URL(), "x", ttl)
	if err := b.Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	if err := b.Join(ctx, "room", msg.Member{Client: "b1", User: "bea"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Join(ctx, "room", msg.Member{Client: "a1", User: "al"}); err != nil {
		t.Fatal(err)
	}
	bev.waitFor(t, "join:a1:al")
	// Refreshes keep a1 present past its first expiry.
	for range 3 {
		if err := a.RefreshPresence(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if c, u, err := b.PresenceStats(ctx, "room"); err != nil || c != 2 || u != 2 {
		t.Fatalf("stats %d %d %v", c, u, err)
	}
	a.Close(ctx) // no Leave: its members expire
	bev.waitFor(t, "leave:a1:al")
	if c, u, err := b.PresenceStats(ctx, "room"); err != nil || c != 1 || u != 1 {
		t.Fatalf("stats after a's end: %d %d %v", c, u, err)
	}
	if b.Stats().PresenceRefreshes.Load() == 0 {
		t.Fatal("b never refreshed")
	}
}

// TestPresenceStatsReadsNoMember: stats of a channel of 10,000 members
// are two HLENs after a bounded sweep, never a read of the members:
// Redis's own command counts say so.
func TestPresenceStatsReadsNoMember(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	ctx := context.Background()
	e, _ := startPresenceEngine(t, srv.URL(), "s", time.Minute)
	const n = 10000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if err := e.Join(ctx, "big", msg.Member{Client: "m" + strconv.Itoa(i), User: "u" + strconv.Itoa(i%100)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	srv.MustDo("CONFIG", "RESETSTAT")
	c, u, err := e.PresenceStats(ctx, "big")
	if err != nil || c != n || u != 100 {
		t.Fatalf("stats %d %d %v", c, u, err)
	}
	for _, reader := range []string{"hgetall", "hvals", "hkeys", "hscan", "zrange", "hget", "zscan"} {
		if n := commandCalls(t, srv, reader); n != 0 {
			t.Fatalf("stats ran %s %d times", reader, n)
		}
	}
	if h, z := commandCalls(t, srv, "hlen"), commandCalls(t, srv, "zrangebyscore"); h != 2 || z != 1 {
		t.Fatalf("stats ran %d HLEN and %d ZRANGEBYSCORE, want 2 and 1", h, z)
	}
}

// TestPresenceRefreshNeverRevives: a refresh batch read before a member's
// Leave ran must not bring the member back (the join/leave storm found
// this): the refresh only moves the expiry of members Redis holds, and
// names the others; a member Redis lost while its engine lives (swept: the
// engine was too slow) is joined again, with a join event.
func TestPresenceRefreshNeverRevives(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	ctx := context.Background()
	e, ev := startPresenceEngine(t, srv.URL(), "r", time.Minute)
	if err := e.Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"m1", "m2"} {
		if err := e.Join(ctx, "room", msg.Member{Client: c}); err != nil {
			t.Fatal(err)
		}
	}
	// A stale batch naming "gone", which left already.
	keys := e.presenceKeys("room")
	res, err := refreshScript.Exec(ctx, mustClient(t, e), keys,
		[]string{"45000", "120000", "1000", "0", e.pubsubName("room"), "2", "m1", "gone"}).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[2] != "gone" {
		t.Fatalf("refresh answered %v, want gone named as missing", res)
	}
	if c, _, _ := e.PresenceStats(ctx, "room"); c != 2 {
		t.Fatalf("%d members after a stale refresh, want 2", c)
	}
	if n := srv.MustDo("ZCARD", keys[1]); n[0] != "2" {
		t.Fatalf("%s expiries after a stale refresh, want 2: gone came back", n[0])
	}
	// m2 swept behind the engine's back: the next refresh joins it again.
	srv.MustDo("ZREM", keys[1], "m2")
	srv.MustDo("HDEL", keys[0], "m2")
	if err := e.RefreshPresence(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _, _ := e.PresenceStats(ctx, "room"); c != 2 {
		t.Fatalf("%d members after the refresh, want m2 back", c)
	}
	ev.waitCount(t, "join:m2:", 2) // its join, and its return
}

func mustClient(t *testing.T, e *Engine) rueidis.Client {
	t.Helper()
	c, err := e.client()
	if err != nil {
		t.Fatal(err)
	}
	return c
}
