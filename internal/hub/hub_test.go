package hub_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

func newHub(t *testing.T, hc hub.Config, mc memory.Config) (*hub.Hub, *memory.Engine) {
	t.Helper()
	eng := memory.New(mc)
	hc.Engine = eng
	return startHub(t, hc), eng
}

// startHub starts a hub on hc (its Engine set) and shuts it down, checking
// that it stops cleanly, when the test ends.
func startHub(t *testing.T, hc hub.Config) *hub.Hub {
	t.Helper()
	h, err := hub.New(context.Background(), hc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return h
}

func publishN(t testing.TB, h *hub.Hub, channel string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := h.Publish(context.Background(), channel, []byte(strconv.Itoa(i))); err != nil {
			t.Errorf("publish %d: %v", i, err)
			return
		}
	}
}

// collect reads items from s until it has seen offset last on channel, or
// fails after a generous deadline (a hang is a bug, not slowness).
func collect(t *testing.T, s *hub.Session, last uint64) (offsets []uint64, gaps []msg.Gap) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		items, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("Next after offsets %v: %v", tail(offsets), err)
		}
		for _, it := range items {
			switch {
			case it.Pub != nil:
				offsets = append(offsets, it.Pub.Offset)
				if it.Pub.Offset == last {
					return offsets, gaps
				}
			case it.Gap != nil:
				gaps = append(gaps, *it.Gap)
			}
		}
	}
}

func tail(o []uint64) []uint64 {
	if len(o) > 5 {
		return o[len(o)-5:]
	}
	return o
}

func wantRange(t *testing.T, got []uint64, from, to uint64) {
	t.Helper()
	if uint64(len(got)) != to-from+1 {
		t.Fatalf("got %d offsets (first %v, last %v), want %d..%d", len(got), got[:min(5, len(got))], tail(got), from, to)
	}
	for i, o := range got {
		if o != from+uint64(i) {
			t.Fatalf("offset #%d = %d, want %d (loss, duplicate or disorder)", i, o, from+uint64(i))
		}
	}
}

// TestReplayLiveSeam resumes from offset K while a publisher runs, many
// times: each reader must get exactly K+1..N, in order.
func TestReplayLiveSeam(t *testing.T) {
	h, _ := newHub(t, hub.Config{}, memory.Config{HistorySize: 10000})
	const rounds, perRound = 200, 50
	for round := range rounds {
		channel := fmt.Sprintf("seam%d", round)
		publishN(t, h, channel, 1, perRound) // history to resume from
		k := uint64(round % perRound)
		var wg sync.WaitGroup
		wg.Go(func() { publishN(t, h, channel, perRound+1, 2*perRound) }) // live, racing the subscribe
		s, err := h.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		st, _, err := h.History(context.Background(), channel, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Subscribe(context.Background(), channel, hub.SubscribeOptions{From: &msg.Position{Epoch: st.Epoch, Offset: k}}); err != nil {
			t.Fatal(err)
		}
		got, gaps := collect(t, s, 2*perRound)
		wg.Wait()
		s.Release()
		if len(gaps) != 0 {
			t.Fatalf("round %d: unexpected gaps %v", round, gaps)
		}
		wantRange(t, got, k+1, 2*perRound)
	}
}

// TestSubscribeNowSeam subscribes without a cursor while a publisher runs:
// the reader gets exactly what follows the offset its subscription reported.
func TestSubscribeNowSeam(t *testing.T) {
	h, _ := newHub(t, hub.Config{}, memory.Config{})
	for round := range 100 {
		channel := fmt.Sprintf("now%d", round)
		var wg sync.WaitGroup
		wg.Go(func() { publishN(t, h, channel, 1, 100) })
		s, err := h.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Subscribe(context.Background(), channel, hub.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if res.Offset == 100 {
			s.Release()
			continue // subscribed after the last publish: nothing to get
		}
		got, _ := collect(t, s, 100)
		s.Release()
		wantRange(t, got, res.Offset+1, 100)
	}
}

func TestGaps(t *testing.T) {
	h, eng := newHub(t, hub.Config{}, memory.Config{HistorySize: 10})
	ctx := context.Background()
	publishN(t, h, "g", 1, 30) // retains 21..30
	st, _, _ := h.History(ctx, "g", 0, 0)
	if st.Oldest != 21 || st.Latest != 30 {
		t.Fatalf("state %+v, want oldest 21 latest 30", st)
	}
	cases := []struct {
		name     string
		from     msg.Position
		wantGap  *uint64
		wantFrom uint64
	}{
		{"trimmed", msg.Position{Epoch: st.Epoch, Offset: 5}, ptr(21), 21},
		{"trimmed any epoch", msg.Position{Offset: 5}, ptr(21), 21},
		{"just retained", msg.Position{Epoch: st.Epoch, Offset: 20}, nil, 21},
		{"other epoch", msg.Position{Epoch: "zzz", Offset: 25}, ptr(21), 21},
		{"ahead", msg.Position{Epoch: st.Epoch, Offset: 99}, ptr(31), 31},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := h.NewSession()
			defer s.Release()
			if _, err := s.Subscribe(ctx, "g", hub.SubscribeOptions{From: &c.from}); err != nil {
				t.Fatal(err)
			}
			publishN(t, h, "g", 0, -1)
			if c.wantFrom == 31 {
				// Nothing retained after the cursor: publish one to see where the reader goes on.
				if _, err := h.Publish(ctx, "g", []byte(`"x"`)); err != nil {
					t.Fatal(err)
				}
			}
			st2, _, _ := h.History(ctx, "g", 0, 0)
			got, gaps := collect(t, s, st2.Latest)
			if c.wantGap == nil {
				if len(gaps) != 0 {
					t.Fatalf("gaps %v, want none", gaps)
				}
			} else if len(gaps) != 1 || gaps[0].Next != *c.wantGap || gaps[0].Epoch != st.Epoch || gaps[0].Channel != "g" {
				t.Fatalf("gaps %+v, want one with next %d epoch %s", gaps, *c.wantGap, st.Epoch)
			}
			wantRange(t, got, c.wantFrom, st2.Latest)
		})
	}

	t.Run("other epoch from zero with offset 1 retained", func(t *testing.T) {
		publishN(t, h, "fresh", 1, 3)
		s, _ := h.NewSession()
		defer s.Release()
		if _, err := s.Subscribe(ctx, "fresh", hub.SubscribeOptions{From: &msg.Position{Epoch: "old", Offset: 0}}); err != nil {
			t.Fatal(err)
		}
		got, gaps := collect(t, s, 3)
		if len(gaps) != 0 {
			t.Fatalf("gaps %v: nothing can have been lost", gaps)
		}
		wantRange(t, got, 1, 3)
	})
	_ = eng
}

func TestGapAfterTTL(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h, _ := newHub(t, hub.Config{}, memory.Config{HistoryTTL: time.Minute, Now: clock})
	ctx := context.Background()
	publishN(t, h, "ttl", 1, 5)
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	publishN(t, h, "ttl", 6, 7)
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(ctx, "ttl", hub.SubscribeOptions{From: &msg.Position{Offset: 2}}); err != nil {
		t.Fatal(err)
	}
	got, gaps := collect(t, s, 7)
	if len(gaps) != 1 || gaps[0].Next != 6 {
		t.Fatalf("gaps %+v, want next 6", gaps)
	}
	wantRange(t, got, 6, 7)
}

func ptr(v uint64) *uint64 { return &v }

// TestSlowConsumer: a session that never drains is closed with CloseSlow;
// the publisher never waits and other sessions get everything.
func TestSlowConsumer(t *testing.T) {
	h, _ := newHub(t, hub.Config{QueueMessages: 16}, memory.Config{})
	ctx := context.Background()
	slow, _ := h.NewSession()
	defer slow.Release()
	fast, _ := h.NewSession()
	defer fast.Release()
	for _, s := range []*hub.Session{slow, fast} {
		if _, err := s.Subscribe(ctx, "c", hub.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var got []uint64
	wg.Go(func() { got, _ = collect(t, fast, 100) })
	for i := 1; i <= 100; i++ {
		if _, err := h.Publish(ctx, "c", []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if i%8 == 0 {
			// Let fast keep up: wait until its queue drained, so only
			// slow overflows.
			waitFor(t, func() bool { return fast.QueueLen() == 0 })
		}
	}
	wg.Wait()
	wantRange(t, got, 1, 100)
	<-slow.Done()
	if code := msg.CloseCodeOf(slow.Err()); code != msg.CloseSlow {
		t.Fatalf("slow session closed with %v, want CloseSlow", slow.Err())
	}
	if _, err := slow.Next(ctx); msg.CloseCodeOf(err) != msg.CloseSlow {
		t.Fatalf("Next on slow = %v", err)
	}
	if h.Stats().SlowCuts != 1 {
		t.Fatalf("SlowCuts = %d", h.Stats().SlowCuts)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(time.Millisecond) // polling a condition
	}
}

func TestQueueBytesBound(t *testing.T) {
	h, _ := newHub(t, hub.Config{QueueBytes: 1000}, memory.Config{})
	ctx := context.Background()
	s, _ := h.NewSession()
	defer s.Release()
	s.Subscribe(ctx, "b", hub.SubscribeOptions{})
	big := []byte(`"` + string(make([]byte, 0)) + fmt.Sprintf("%0400d", 0) + `"`)
	for range 3 {
		h.Publish(ctx, "b", big)
	}
	<-s.Done()
	if msg.CloseCodeOf(s.Err()) != msg.CloseSlow {
		t.Fatalf("err %v, want CloseSlow", s.Err())
	}
}

func TestAckBeforeReplay(t *testing.T) {
	h, _ := newHub(t, hub.Config{}, memory.Config{})
	ctx := context.Background()
	publishN(t, h, "ack", 1, 3)
	s, _ := h.NewSession()
	defer s.Release()
	_, err := s.Subscribe(ctx, "ack", hub.SubscribeOptions{
		From: &msg.Position{Offset: 0},
		Ack:  func(r hub.SubscribeResult) []byte { return []byte("ok " + strconv.FormatUint(r.Offset, 10)) },
	})
	if err != nil {
		t.Fatal(err)
	}
	items, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 4 || string(items[0].Raw) != "ok 3" || items[1].Pub.Offset != 1 || items[3].Pub.Offset != 3 {
		t.Fatalf("items %+v", items)
	}
}

func TestSessionErrors(t *testing.T) {
	h, _ := newHub(t, hub.Config{MaxChannels: 2}, memory.Config{})
	ctx := context.Background()
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(ctx, "bad channel", hub.SubscribeOptions{}); msg.CodeOf(err) != msg.CodeInvalidChannel {
		t.Fatalf("invalid channel: %v", err)
	}
	s.Subscribe(ctx, "a", hub.SubscribeOptions{})
	if _, err := s.Subscribe(ctx, "a", hub.SubscribeOptions{}); msg.CodeOf(err) != msg.CodeBadRequest {
		t.Fatalf("twice: %v", err)
	}
	s.Subscribe(ctx, "b", hub.SubscribeOptions{})
	if _, err := s.Subscribe(ctx, "c", hub.SubscribeOptions{}); msg.CodeOf(err) != msg.CodeBadRequest {
		t.Fatalf("too many: %v", err)
	}
	if err := s.Unsubscribe(ctx, "zzz"); msg.CodeOf(err) != msg.CodeBadRequest {
		t.Fatalf("unsubscribe unknown: %v", err)
	}
	if err := s.Unsubscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	h.Publish(ctx, "a", []byte("1"))
	h.Publish(ctx, "b", []byte("2"))
	items, _ := s.Next(ctx)
	if len(items) != 1 || items[0].Pub.Channel != "b" {
		t.Fatalf("after unsubscribe got %+v", items)
	}
	for _, bad := range []string{``, `{`, `nope`, `{"a":1}x`} {
		if _, err := h.Publish(ctx, "a", []byte(bad)); msg.CodeOf(err) != msg.CodeInvalidJSON {
			t.Errorf("publish %q: %v", bad, err)
		}
	}
	if _, err := h.Publish(ctx, "a", []byte(`"`+strings.Repeat("x", 70000)+`"`)); msg.CodeOf(err) != msg.CodeTooLarge {
		t.Errorf("big publish: %v", err)
	}
	if _, err := h.Publish(ctx, "a", make([]byte, 200000)); msg.CodeOf(err) != msg.CodeTooLarge {
		t.Errorf("big publish: %v", err)
	}
	p, err := h.Publish(ctx, "a", []byte(" { \"a\" : [ 1 , 2 ] } "))
	if err != nil || string(p.Data) != `{"a":[1,2]}` {
		t.Errorf("compaction: %s %v", p.Data, err)
	}
}

func TestShutdownClosesSessions(t *testing.T) {
	eng := memory.New(memory.Config{})
	h, err := hub.New(context.Background(), hub.Config{Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := h.NewSession()
	s.Subscribe(context.Background(), "x", hub.SubscribeOptions{})
	done := make(chan error)
	go func() { done <- h.Shutdown(context.Background()) }()
	<-s.Done()
	if msg.CloseCodeOf(s.Err()) != msg.CloseGoingAway {
		t.Fatalf("err %v", s.Err())
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v before the session was released", err)
	default:
	}
	s.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := h.NewSession(); !errors.Is(err, hub.ErrShutdown) {
		t.Fatalf("NewSession after shutdown: %v", err)
	}
	if _, err := h.Publish(context.Background(), "x", []byte("1")); !errors.Is(err, hub.ErrShutdown) {
		t.Fatalf("Publish after shutdown: %v", err)
	}
}

// seamEngine is the real memory engine with a hook that publishes while a
// subscription reads its history: before the read (so those publications
// are both in the replay and delivered live) and after it (delivered live
// only). It makes the replay/live seam happen on every run instead of by
// chance.
type seamEngine struct {
	*memory.Engine
	before, after func(channel string)
}

func (e *seamEngine) History(ctx context.Context, channel string, q hub.HistoryQuery) (hub.StreamState, []*hub.Publication, error) {
	if e.before != nil {
		e.before(channel)
	}
	st, pubs, err := e.Engine.History(ctx, channel, q)
	if e.after != nil {
		e.after(channel)
	}
	return st, pubs, err
}

func TestReplayLiveSeamDeterministic(t *testing.T) {
	eng := &seamEngine{Engine: memory.New(memory.Config{})}
	h, err := hub.New(context.Background(), hub.Config{Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(context.Background())
	ctx := context.Background()
	next := 1
	pub := func(channel string) {
		for range 3 {
			if _, err := eng.Engine.Publish(ctx, channel, []byte(strconv.Itoa(next))); err != nil {
				t.Error(err)
			}
			next++
		}
	}
	publishN(t, h, "d", 1, 10)
	next = 11
	eng.before, eng.after = pub, pub // 11..13 in both replay and live, 14..16 live only
	for _, from := range []*msg.Position{{Offset: 4}, nil} {
		s, _ := h.NewSession()
		res, err := s.Subscribe(ctx, "d", hub.SubscribeOptions{From: from})
		if err != nil {
			t.Fatal(err)
		}
		got, gaps := collect(t, s, uint64(next-1))
		s.Release()
		if len(gaps) != 0 {
			t.Fatalf("gaps %v", gaps)
		}
		first := uint64(5)
		if from == nil {
			first = res.Offset + 1
		}
		wantRange(t, got, first, uint64(next-1))
	}
}

// TestDeliveredCount: Stats().Delivered counts each publication queued to
// a session once — live and replayed alike — and nothing a closed session
// dropped.
func TestDeliveredCount(t *testing.T) {
	h, _ := newHub(t, hub.Config{QueueMessages: 4}, memory.Config{})
	ctx := context.Background()
	publishN(t, h, "d", 1, 2)
	a, _ := h.NewSession()
	defer a.Release()
	b, _ := h.NewSession()
	defer b.Release()
	a.Subscribe(ctx, "d", hub.SubscribeOptions{From: &msg.Position{Offset: 0}}) // replays 2
	b.Subscribe(ctx, "d", hub.SubscribeOptions{})
	publishN(t, h, "d", 3, 4) // 2 each: 4
	if got := h.Stats().Delivered; got != 6 {
		t.Fatalf("Delivered = %d after 2 replayed + 2×2 live, want 6", got)
	}
	a.Next(ctx)
	b.Next(ctx)
	for i := 5; i <= 9; i++ { // a drains after each; b never does: queue of 4, the 5th cuts it
		publishN(t, h, "d", i, i)
		if _, err := a.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	<-b.Done()
	if got := h.Stats().Delivered; got != 6+5+4 {
		t.Fatalf("Delivered = %d, want %d (a: 5, b: 4 before it was cut)", got, 6+5+4)
	}
}

// TestQueueTakesOneItemOverItsBytes: an item larger than QueueBytes is
// still queued when the queue is empty (a reader that keeps up gets the
// largest frame however small the bound), and a second one behind it
// closes the session as slow, as any overflow does.
func TestQueueTakesOneItemOverItsBytes(t *testing.T) {
	h, _ := newHub(t, hub.Config{QueueBytes: 100}, memory.Config{})
	ctx := context.Background()
	s, _ := h.NewSession()
	defer s.Release()
	s.Subscribe(ctx, "o", hub.SubscribeOptions{})
	big := []byte(`"` + fmt.Sprintf("%0400d", 0) + `"`)
	p, _ := h.Publish(ctx, "o", big)
	items, err := s.TryNext()
	if err != nil || len(items) != 1 || items[0].Pub == nil || items[0].Pub.Offset != p.Offset {
		t.Fatalf("the one large item: %+v, %v", items, err)
	}
	h.Publish(ctx, "o", big)
	h.Publish(ctx, "o", big)
	<-s.Done()
	if msg.CloseCodeOf(s.Err()) != msg.CloseSlow {
		t.Fatalf("err %v, want CloseSlow", s.Err())
	}
}
