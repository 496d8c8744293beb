package memory

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{now: time.Unix(1_700_000_000, 0)} }
func pub(t *testing.T, e *Engine, ch string, n int) {
	t.Helper()
	for i := range n {
		if _, err := e.Publish(context.Background(), ch, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRingAndOffsets(t *testing.T) {
	e := New(Config{HistorySize: 5})
	ctx := context.Background()
	pub(t, e, "c", 12)
	st, pubs, err := e.History(ctx, "c", hub.HistoryQuery{Limit: -1})
	if err != nil {
		t.Fatal(err)
	}
	if st.Oldest != 8 || st.Latest != 12 || len(pubs) != 5 || pubs[0].Offset != 8 || pubs[4].Offset != 12 {
		t.Fatalf("state %+v, %d pubs", st, len(pubs))
	}
	if !msg.ValidEpoch(st.Epoch) {
		t.Fatalf("epoch %q", st.Epoch)
	}
	for _, q := range []struct {
		after       uint64
		limit       int
		first, last uint64
		n           int
	}{{0, 2, 8, 9, 2}, {9, -1, 10, 12, 3}, {12, -1, 0, 0, 0}, {50, -1, 0, 0, 0}, {10, 0, 0, 0, 0}, {11, 10, 12, 12, 1}} {
		_, pubs, _ := e.History(ctx, "c", hub.HistoryQuery{After: q.after, Limit: q.limit})
		if len(pubs) != q.n || (q.n > 0 && (pubs[0].Offset != q.first || pubs[q.n-1].Offset != q.last)) {
			t.Fatalf("after %d limit %d: %d pubs", q.after, q.limit, len(pubs))
		}
	}
	// The encoded envelope is the envelope.
	if string(pubs[0].JSON) != `{"type":"message","channel":"c","epoch":"`+st.Epoch+`","offset":8,"time":`+strconv.FormatInt(pubs[0].Time, 10)+`,"data":7}` {
		t.Fatalf("JSON %s", pubs[0].JSON)
	}
}

func TestNoHistory(t *testing.T) {
	e := New(Config{HistorySize: -1})
	pub(t, e, "c", 3)
	st, pubs, _ := e.History(context.Background(), "c", hub.HistoryQuery{Limit: -1})
	if st.Oldest != 4 || st.Latest != 3 || len(pubs) != 0 {
		t.Fatalf("%+v %d", st, len(pubs))
	}
}

func TestTTLAndSweep(t *testing.T) {
	c := newClock()
	e := New(Config{HistoryTTL: time.Minute, Now: c.Now})
	ctx := context.Background()
	pub(t, e, "old", 3)
	st1, _, _ := e.History(ctx, "old", hub.HistoryQuery{})
	e.Subscribe(ctx, "kept")
	c.Add(30 * time.Second)
	pub(t, e, "old", 2) // offsets 4, 5
	c.Add(45 * time.Second)
	st, pubs, _ := e.History(ctx, "old", hub.HistoryQuery{Limit: -1})
	if st.Oldest != 4 || len(pubs) != 2 {
		t.Fatalf("after TTL: %+v %d", st, len(pubs))
	}
	if e.Channels() != 2 {
		t.Fatalf("channels %d", e.Channels())
	}
	c.Add(2 * time.Minute)
	e.Sweep()
	// "old" expired and unused: freed. "kept" has a subscriber: kept.
	if e.Channels() != 1 {
		t.Fatalf("after sweep: %d channels", e.Channels())
	}
	st2, _, _ := e.History(ctx, "old", hub.HistoryQuery{})
	if st2.Epoch == st1.Epoch || st2.Latest != 0 {
		t.Fatalf("a freed channel must come back with a new epoch: %+v vs %+v", st2, st1)
	}
	e.Unsubscribe(ctx, "kept")
	c.Add(2 * time.Minute)
	e.Sweep()
	if e.Channels() != 0 { // both idle for longer than the TTL now
		t.Fatalf("after second sweep: %d", e.Channels())
	}
}

func TestHandlerOnlyWhenSubscribed(t *testing.T) {
	e := New(Config{})
	var got []uint64
	e.Start(context.Background(), hub.Handlers{Deliver: func(p *hub.Publication) { got = append(got, p.Offset) }})
	defer e.Close(context.Background())
	pub(t, e, "h", 1)
	e.Subscribe(context.Background(), "h")
	pub(t, e, "h", 2)
	e.Unsubscribe(context.Background(), "h")
	pub(t, e, "h", 1)
	if len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Fatalf("handler saw %v", got)
	}
}

func TestConcurrentPublishNoHoles(t *testing.T) {
	e := New(Config{HistorySize: 10000})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { pub(t, e, "x", 500) })
	}
	wg.Go(func() {
		for range 200 {
			e.Sweep()
		}
	})
	wg.Wait()
	_, pubs, _ := e.History(context.Background(), "x", hub.HistoryQuery{Limit: -1})
	for i, p := range pubs {
		if p.Offset != uint64(i+1) {
			t.Fatalf("offset %d at %d", p.Offset, i)
		}
	}
	if len(pubs) != 4000 {
		t.Fatalf("%d pubs", len(pubs))
	}
}

func TestEpochsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		ep := newEpoch()
		if seen[ep] || !msg.ValidEpoch(ep) {
			t.Fatalf("epoch %q repeated or invalid", ep)
		}
		seen[ep] = true
	}
}
