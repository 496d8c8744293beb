package memory_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hub/enginetest"
	"github.com/duplexhq/duplex/msg"
)

// TestConformance runs the engine conformance suite. The memory engine has
// no store of its own to share between processes, so the "store" here is
// one memory engine and each instance a view of it with its own Handlers
// and subscription counts, as two hubs on one Redis have.
func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) *enginetest.Store {
		s := &sharedMemory{}
		t.Cleanup(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.base != nil {
				s.base.Close(context.Background())
			}
		})
		return &enginetest.Store{NewEngine: s.newView, Flush: s.flush}
	})
}

// sharedMemory is one memory engine shared by views. Lock order:
// sharedMemory.mu before view.mu; neither is held while calling into base
// except by flush, which base never calls back under (base's handler takes
// only view.mu).
type sharedMemory struct {
	mu    sync.Mutex // guards base, cfg, views
	base  *memory.Engine
	cfg   memory.Config
	views []*view
}

func (s *sharedMemory) newView(t *testing.T, cfg enginetest.Config) hub.Engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base == nil {
		s.cfg = memory.Config{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL}
		s.base = s.startBase(t)
	}
	v := &view{store: s, subs: map[string]int{}}
	s.views = append(s.views, v)
	return v
}

func (s *sharedMemory) startBase(t *testing.T) *memory.Engine {
	e := memory.New(s.cfg)
	if err := e.Start(context.Background(), hub.Handlers{Deliver: s.deliver, Presence: s.presence}); err != nil {
		t.Fatal(err)
	}
	return e
}

// deliver hands p to every view subscribed to its channel.
func (s *sharedMemory) deliver(p *hub.Publication) {
	s.mu.Lock()
	views := s.views
	s.mu.Unlock()
	for _, v := range views {
		v.mu.Lock()
		n, d := v.subs[p.Channel], v.deliver
		v.mu.Unlock()
		if n > 0 && d != nil {
			d(p)
		}
	}
}

// presence hands ev to every view subscribed to its channel.
func (s *sharedMemory) presence(ev *hub.PresenceEvent) {
	s.mu.Lock()
	views := s.views
	s.mu.Unlock()
	for _, v := range views {
		v.mu.Lock()
		n, f := v.subs[ev.Channel], v.onPresence
		v.mu.Unlock()
		if n > 0 && f != nil {
			f(ev)
		}
	}
}

// flush replaces the engine by a new one, as a restart would, keeping the
// views' subscriptions.
func (s *sharedMemory) flush(t *testing.T) {
	s.mu.Lock()
	old := s.base
	s.base = s.startBase(t)
	for _, v := range s.views {
		v.mu.Lock()
		for ch, n := range v.subs {
			for range n {
				s.base.Subscribe(context.Background(), ch)
			}
		}
		v.mu.Unlock()
	}
	s.mu.Unlock()
	old.Close(context.Background())
}

func (s *sharedMemory) engine() *memory.Engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base
}

// view is one engine instance on a sharedMemory.
type view struct {
	store *sharedMemory

	mu         sync.Mutex // guards subs, deliver, onPresence
	subs       map[string]int
	deliver    func(*hub.Publication)
	onPresence func(*hub.PresenceEvent)
}

func (v *view) Join(ctx context.Context, channel string, m msg.Member) error {
	return v.store.engine().Join(ctx, channel, m)
}

func (v *view) Leave(ctx context.Context, channel, client string) error {
	return v.store.engine().Leave(ctx, channel, client)
}

func (v *view) Members(ctx context.Context, channel string) ([]msg.Member, error) {
	return v.store.engine().Members(ctx, channel)
}

func (v *view) PresenceStats(ctx context.Context, channel string) (int, int, error) {
	return v.store.engine().PresenceStats(ctx, channel)
}

func (v *view) Start(ctx context.Context, h hub.Handlers) error {
	v.mu.Lock()
	v.deliver = h.Deliver
	v.onPresence = h.Presence
	v.mu.Unlock()
	return nil
}

func (v *view) Publish(ctx context.Context, channel string, data json.RawMessage) (*hub.Publication, error) {
	return v.store.engine().Publish(ctx, channel, data)
}

func (v *view) History(ctx context.Context, channel string, q hub.HistoryQuery) (hub.StreamState, []*hub.Publication, error) {
	return v.store.engine().History(ctx, channel, q)
}

func (v *view) Subscribe(ctx context.Context, channel string) error {
	v.mu.Lock()
	v.subs[channel]++
	v.mu.Unlock()
	return v.store.engine().Subscribe(ctx, channel)
}

func (v *view) Unsubscribe(ctx context.Context, channel string) error {
	v.mu.Lock()
	if v.subs[channel] == 0 {
		v.mu.Unlock()
		return nil
	}
	v.subs[channel]--
	v.mu.Unlock()
	return v.store.engine().Unsubscribe(ctx, channel)
}

func (v *view) Close(ctx context.Context) error {
	v.mu.Lock()
	v.deliver = nil
	v.onPresence = nil
	v.mu.Unlock()
	return nil
}
