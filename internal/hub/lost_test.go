package hub_test

import (
	"context"
	"sync"
	"testing"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// lossyEngine is the real memory engine whose delivery can be cut: while
// dropping, publications are stored but not delivered, as when a Redis
// pub/sub connection is down. Restore ends the drop and, like an engine
// whose delivery is back, calls Lost.
type lossyEngine struct {
	*memory.Engine
	mu       sync.Mutex
	handlers hub.Handlers
	dropping bool
}

func (e *lossyEngine) Start(ctx context.Context, h hub.Handlers) error {
	e.handlers = h
	return e.Engine.Start(ctx, hub.Handlers{Deliver: func(p *hub.Publication) {
		e.mu.Lock()
		drop := e.dropping
		e.mu.Unlock()
		if !drop {
			h.Deliver(p)
		}
	}})
}

func (e *lossyEngine) drop(on bool) {
	e.mu.Lock()
	e.dropping = on
	e.mu.Unlock()
}

func newLossyHub(t *testing.T, hc hub.Config, mc memory.Config) (*hub.Hub, *lossyEngine) {
	t.Helper()
	eng := &lossyEngine{Engine: memory.New(mc)}
	hc.Engine = eng
	return startHub(t, hc), eng
}

// TestLostDeliveryIsFilledFromHistory: publications the engine failed to
// deliver are queued from history once it reports the loss, then live
// traffic goes on: every offset once, in order, and no gap.
func TestLostDeliveryIsFilledFromHistory(t *testing.T) {
	for _, tc := range []struct {
		name string
		// lost says whether the engine reports the loss; when it does
		// not, the next live publication shows the hole.
		lost bool
	}{{"reported", true}, {"seen live", false}} {
		t.Run(tc.name, func(t *testing.T) {
			h, eng := newLossyHub(t, hub.Config{}, memory.Config{})
			ctx := context.Background()
			s, _ := h.NewSession()
			defer s.Release()
			if _, err := s.Subscribe(ctx, "c", hub.SubscribeOptions{}); err != nil {
				t.Fatal(err)
			}
			publishN(t, h, "c", 1, 5)
			eng.drop(true)
			publishN(t, h, "c", 6, 10)
			eng.drop(false)
			if tc.lost {
				eng.handlers.Lost("c")
			}
			publishN(t, h, "c", 11, 15)
			got, gaps := collect(t, s, 15)
			if len(gaps) != 0 {
				t.Fatalf("gaps %v: history held every message", gaps)
			}
			wantRange(t, got, 1, 15)
		})
	}
}

// TestLostWithoutLossChangesNothing: a loss report when nothing was lost
// brings no duplicate and no gap.
func TestLostWithoutLossChangesNothing(t *testing.T) {
	h, eng := newLossyHub(t, hub.Config{}, memory.Config{})
	ctx := context.Background()
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(ctx, "c", hub.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	publishN(t, h, "c", 1, 3)
	eng.handlers.Lost("c")
	eng.handlers.Lost("unsubscribed")
	publishN(t, h, "c", 4, 6)
	got, gaps := collect(t, s, 6)
	if len(gaps) != 0 {
		t.Fatalf("gaps %v", gaps)
	}
	wantRange(t, got, 1, 6)
	if st := h.Stats(); st.Lost != 2 {
		t.Fatalf("Lost = %d, want 2", st.Lost)
	}
}

// TestLostBeyondHistoryIsAGap: when history no longer holds what was lost,
// the session gets a gap to the oldest retained offset, then the rest.
func TestLostBeyondHistoryIsAGap(t *testing.T) {
	h, eng := newLossyHub(t, hub.Config{}, memory.Config{HistorySize: 3})
	ctx := context.Background()
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(ctx, "c", hub.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	publishN(t, h, "c", 1, 2)
	eng.drop(true)
	publishN(t, h, "c", 3, 10) // history keeps 8..10
	eng.drop(false)
	eng.handlers.Lost("c")
	got, gaps := collect(t, s, 10)
	if len(gaps) != 1 || gaps[0].Next != 8 {
		t.Fatalf("gaps %v, want one to offset 8", gaps)
	}
	if want := []uint64{1, 2, 8, 9, 10}; !equal(got, want) {
		t.Fatalf("offsets %v, want %v", got, want)
	}
}

// TestLostDuringReplay: a loss reported while a resume is still replaying
// (the history read is under way) is filled too: the read made before
// the loss cannot vouch for what pending lacks.
func TestLostDuringReplay(t *testing.T) {
	inner := &lossyEngine{Engine: memory.New(memory.Config{})}
	eng := &seamEngine{Engine: inner.Engine}
	wrapped := &lossySeam{seamEngine: eng, lossy: inner}
	h, err := hub.New(context.Background(), hub.Config{Engine: wrapped})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(context.Background())
	ctx := context.Background()
	publishN(t, h, "c", 1, 4)
	once := false
	eng.after = func(channel string) {
		if once {
			return
		}
		once = true
		// After the first read (which saw 1..4): 5..7 are stored but
		// not delivered, and the loss is reported. Nothing comes live
		// after, so pending is empty when the replay ends: only the
		// loss says that history must be read again.
		inner.drop(true)
		publishN(t, h, channel, 5, 7)
		inner.drop(false)
		inner.handlers.Lost(channel)
	}
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(ctx, "c", hub.SubscribeOptions{From: &msg.Position{Offset: 2}}); err != nil {
		t.Fatal(err)
	}
	got, gaps := collect(t, s, 7)
	if len(gaps) != 0 {
		t.Fatalf("gaps %v", gaps)
	}
	wantRange(t, got, 3, 7)
}

// lossySeam is a seamEngine whose delivery goes through a lossyEngine.
type lossySeam struct {
	*seamEngine
	lossy *lossyEngine
}

func (e *lossySeam) Start(ctx context.Context, h hub.Handlers) error {
	return e.lossy.Start(ctx, h)
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
