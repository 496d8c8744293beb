package hub_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// wipedEngine is the real memory engine seen as a store that lost
// everything, as Redis without persistence after a restart: until the
// next publication it holds no epoch for any channel (the Redis engine
// answers a channel it does not hold with an empty epoch, where the memory
// engine makes one up at the first read).
type wipedEngine struct {
	*memory.Engine
	published atomic.Bool
}

func (e *wipedEngine) Publish(ctx context.Context, channel string, data json.RawMessage) (*hub.Publication, error) {
	e.published.Store(true)
	return e.Engine.Publish(ctx, channel, data)
}

func (e *wipedEngine) History(ctx context.Context, channel string, q hub.HistoryQuery) (hub.StreamState, []*hub.Publication, error) {
	if !e.published.Load() {
		return hub.StreamState{Oldest: 1}, nil, nil
	}
	return e.Engine.History(ctx, channel, q)
}

// TestResumeIntoEmptyStoreGapNamesTheNewEpoch: a reader resumes with a
// position in an epoch the store no longer holds, and the store holds no
// epoch at all yet. No gap can name an epoch then, so none is sent until
// the channel's new epoch begins: the reader gets one gap naming it, then
// its messages — never a gap with an empty epoch.
func TestResumeIntoEmptyStoreGapNamesTheNewEpoch(t *testing.T) {
	eng := &wipedEngine{Engine: memory.New(memory.Config{})}
	h := startHub(t, hub.Config{Engine: eng})
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(context.Background(), "c", hub.SubscribeOptions{From: &msg.Position{Epoch: "oldepoch01", Offset: 5}}); err != nil {
		t.Fatal(err)
	}
	publishN(t, h, "c", 1, 3)
	got, gaps := collect(t, s, 3)
	wantRange(t, got, 1, 3)
	st, _, err := eng.History(context.Background(), "c", hub.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) != 1 || gaps[0].Epoch != st.Epoch || gaps[0].Next != 1 {
		t.Fatalf("gaps %+v, want one naming the new epoch %q with next 1", gaps, st.Epoch)
	}
}
