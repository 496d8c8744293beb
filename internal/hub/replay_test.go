package hub_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// pageEngine is the memory engine recording the largest history read it
// answered, in publications and in bytes.
type pageEngine struct {
	*memory.Engine
	mu              sync.Mutex
	maxN, maxBytes  int
	reads, readPubs int
}

func (e *pageEngine) History(ctx context.Context, channel string, q hub.HistoryQuery) (hub.StreamState, []*hub.Publication, error) {
	st, pubs, err := e.Engine.History(ctx, channel, q)
	n := 0
	for _, p := range pubs {
		n += len(p.JSON)
	}
	e.mu.Lock()
	e.maxN, e.maxBytes = max(e.maxN, len(pubs)), max(e.maxBytes, n)
	e.reads++
	e.readPubs += len(pubs)
	e.mu.Unlock()
	return st, pubs, err
}

// TestResumeManyChannelsInPages: a session resuming 128 channels, each
// with more history than its whole queue holds, gets every message once,
// in order per channel, while no history read hands the hub more than
// half the queue's bounds and the queue never holds more than them.
func TestResumeManyChannelsInPages(t *testing.T) {
	const (
		chans, perChan = 128, 60
		queueMessages  = 64
		queueBytes     = 48 << 10
		maxMessage     = 2 << 10
	)
	eng := &pageEngine{Engine: memory.New(memory.Config{})}
	h, err := hub.New(context.Background(), hub.Config{Engine: eng,
		QueueMessages: queueMessages, QueueBytes: queueBytes, MaxMessage: maxMessage, MaxChannels: chans})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(context.Background())
	ctx := context.Background()
	pad := strings.Repeat("x", 1000)
	for c := range chans {
		for i := 1; i <= perChan; i++ {
			if _, err := h.Publish(ctx, fmt.Sprint("c", c), fmt.Appendf(nil, `{"i":%d,"p":"%s"}`, i, pad)); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, _ := h.NewSession()
	defer s.Release()
	for c := range chans {
		if _, err := s.Subscribe(ctx, fmt.Sprint("c", c), hub.SubscribeOptions{From: &msg.Position{Offset: 0}}); err != nil {
			t.Fatal(err)
		}
	}
	last := map[string]uint64{}
	for got := 0; got < chans*perChan; {
		items, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v (stats %+v)", got, err, h.Stats())
		}
		n := 0
		for _, it := range items {
			if it.Gap != nil {
				t.Fatalf("gap %+v", *it.Gap)
			}
			if it.Pub == nil {
				continue
			}
			n += len(it.Pub.JSON)
			if want := last[it.Pub.Channel] + 1; it.Pub.Offset != want {
				t.Fatalf("%s: offset %d, want %d", it.Pub.Channel, it.Pub.Offset, want)
			}
			last[it.Pub.Channel] = it.Pub.Offset
			got++
		}
		if len(items) > queueMessages || n > queueBytes {
			t.Fatalf("one take held %d items, %d bytes: over the queue bounds", len(items), n)
		}
		s.Written()
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if eng.maxN > queueMessages/2 || eng.maxBytes > queueBytes/2 {
		t.Fatalf("a history read returned %d publications, %d bytes: over half the queue bounds", eng.maxN, eng.maxBytes)
	}
	if eng.readPubs != chans*perChan {
		t.Fatalf("history reads returned %d publications in all, want each of %d once", eng.readPubs, chans*perChan)
	}
	if h.Stats().SlowCuts != 0 {
		t.Fatal("cut as slow by its own replay")
	}
}

// TestLiveTrafficDuringLongReplay: live publications that come while a
// slow resume is still replaying do not cut the session: pending keeps a
// page of them, drops the older ones (history holds them) and the replay
// reads on until it meets live traffic. Every message once, no gap.
func TestLiveTrafficDuringLongReplay(t *testing.T) {
	h, _ := newHub(t, hub.Config{QueueMessages: 8}, memory.Config{})
	ctx := context.Background()
	publishN(t, h, "c", 1, 50)
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(ctx, "c", hub.SubscribeOptions{From: &msg.Position{Offset: 0}}); err != nil {
		t.Fatal(err)
	}
	// The first page waits untaken: 51..100 come live meanwhile, far
	// more than pending keeps.
	publishN(t, h, "c", 51, 100)
	got, gaps := collect(t, s, 100)
	if len(gaps) != 0 {
		t.Fatalf("gaps %v", gaps)
	}
	wantRange(t, got, 1, 100)
	publishN(t, h, "c", 101, 102)
	got, _ = collect(t, s, 102)
	wantRange(t, got, 101, 102)
	if st := h.Stats(); st.SlowCuts != 0 {
		t.Fatalf("%d slow cuts", st.SlowCuts)
	}
}

// TestLiveTrafficDuringReplayPastHistory: when live traffic during a slow
// replay outruns history, the part history lost is a gap, once, and the
// rest comes in order.
func TestLiveTrafficDuringReplayPastHistory(t *testing.T) {
	h, _ := newHub(t, hub.Config{QueueMessages: 8}, memory.Config{HistorySize: 20})
	ctx := context.Background()
	publishN(t, h, "c", 1, 10)
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(ctx, "c", hub.SubscribeOptions{From: &msg.Position{Offset: 0}}); err != nil {
		t.Fatal(err)
	}
	publishN(t, h, "c", 11, 100) // history keeps 81..100
	got, gaps := collect(t, s, 100)
	if len(gaps) != 1 || gaps[0].Next != 81 {
		t.Fatalf("gaps %v, want one to 81", gaps)
	}
	want := []uint64{1, 2, 3, 4}
	for o := uint64(81); o <= 100; o++ {
		want = append(want, o)
	}
	if !equal(got, want) {
		t.Fatalf("offsets %v, want %v", got, want)
	}
}
