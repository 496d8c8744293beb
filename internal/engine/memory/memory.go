package memory

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// Config configures an Engine. The zero value is usable.
type Config struct {
	// HistorySize is how many publications each channel keeps. Zero means
	// 1000; negative keeps none.
	HistorySize int
	// HistoryTTL is how long a publication is kept. Zero means 10 minutes.
	HistoryTTL time.Duration
	// SweepInterval is how often idle channels are looked for. Zero means
	// one minute.
	SweepInterval time.Duration
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
}

// Engine is the in-memory hub.Engine. It is safe for concurrent use.
type Engine struct {
	cfg Config

	mu       sync.RWMutex // guards channels, handler, started
	channels map[string]*stream
	handler  func(*hub.Publication)
	presence func(*hub.PresenceEvent)
	started  bool

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// stream is one channel's offsets and history.
type stream struct {
	mu     sync.Mutex // guards everything below
	epoch  string
	latest uint64
	// ring holds the retained publications, oldest at head, n of them.
	ring     []*hub.Publication
	head, n  int
	subs     int
	lastUsed time.Time
	dead     bool // freed by Sweep: callers holding it look it up again
	// members are the channel's present clients, users how many of them
	// each non-empty user has (presence.go).
	members map[string]msg.Member
	users   map[string]int
}

// New returns an Engine.
func New(cfg Config) *Engine {
	cfg.HistorySize, cfg.HistoryTTL = hub.HistoryLimits(cfg.HistorySize, cfg.HistoryTTL)
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Engine{cfg: cfg, channels: make(map[string]*stream), stop: make(chan struct{})}
}

// Start records h.Deliver and starts the idle-channel sweeper. It never
// calls h.Lost: a publication is handed to Deliver under its channel's
// lock, in Publish, so none can go missing.
func (e *Engine) Start(ctx context.Context, h hub.Handlers) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return errors.New("memory engine: started twice")
	}
	e.started = true
	e.handler = h.Deliver
	e.presence = h.Presence
	e.mu.Unlock()
	e.wg.Go(e.sweepLoop)
	return nil
}

// Close stops the sweeper.
func (e *Engine) Close(ctx context.Context) error {
	e.once.Do(func() { close(e.stop) })
	e.wg.Wait()
	return nil
}

func (e *Engine) sweepLoop() {
	t := time.NewTicker(e.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			e.Sweep()
		}
	}
}

// Sweep trims expired history everywhere and frees idle channels: no
// subscriber, nothing retained, unused for HistoryTTL. The sweeper calls it
// every SweepInterval; tests may call it directly.
func (e *Engine) Sweep() {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, s := range e.channels {
		s.mu.Lock()
		s.trimLocked(now, e.cfg.HistoryTTL)
		idle := s.subs == 0 && s.n == 0 && len(s.members) == 0 && now.Sub(s.lastUsed) >= e.cfg.HistoryTTL
		if idle {
			s.dead = true
			delete(e.channels, name)
		}
		s.mu.Unlock()
	}
}

// Channels returns how many channels the engine holds.
func (e *Engine) Channels() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.channels)
}

// get returns the live stream of name, creating it if needed, locked.
func (e *Engine) get(name string) *stream {
	for {
		if s := e.lookup(name); !s.dead {
			return s
		} else {
			s.mu.Unlock()
		}
	}
}

func (e *Engine) lookup(name string) *stream {
	e.mu.RLock()
	s := e.channels[name]
	e.mu.RUnlock()
	if s == nil {
		e.mu.Lock()
		s = e.channels[name]
		if s == nil {
			s = &stream{epoch: newEpoch(), lastUsed: e.cfg.Now()}
			e.channels[name] = s
		}
		e.mu.Unlock()
	}
	s.mu.Lock()
	return s
}

// Publish implements hub.Engine.
func (e *Engine) Publish(ctx context.Context, channel string, data json.RawMessage) (*hub.Publication, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.mu.RLock()
	handler := e.handler
	e.mu.RUnlock()
	s := e.get(channel)
	defer s.mu.Unlock()
	now := e.cfg.Now()
	s.latest++
	p := hub.NewPublication(channel, s.epoch, s.latest, now.UnixMilli(), data)
	s.appendLocked(p, e.cfg.HistorySize)
	s.trimLocked(now, e.cfg.HistoryTTL)
	s.lastUsed = now
	if s.subs > 0 && handler != nil {
		// Under s.mu, so the hub sees this channel's publications in
		// offset order.
		handler(p)
	}
	return p, nil
}

// History implements hub.Engine.
func (e *Engine) History(ctx context.Context, channel string, q hub.HistoryQuery) (hub.StreamState, []*hub.Publication, error) {
	if err := ctx.Err(); err != nil {
		return hub.StreamState{}, nil, err
	}
	s := e.get(channel)
	defer s.mu.Unlock()
	now := e.cfg.Now()
	s.trimLocked(now, e.cfg.HistoryTTL)
	s.lastUsed = now
	oldest := s.latest + 1 - uint64(s.n)
	st := hub.StreamState{Epoch: s.epoch, Oldest: oldest, Latest: s.latest}
	if q.Limit == 0 || q.After >= s.latest {
		return st, nil, nil
	}
	first := max(q.After+1, oldest) // offset of the first to return
	if first > s.latest {
		return st, nil, nil
	}
	count := int(s.latest - first + 1)
	if q.Limit > 0 && count > q.Limit {
		count = q.Limit
	}
	out := make([]*hub.Publication, count)
	skip := int(first - oldest)
	for i := range count {
		out[i] = s.ring[(s.head+skip+i)%len(s.ring)]
	}
	return st, out, nil
}

// Subscribe implements hub.Engine.
func (e *Engine) Subscribe(ctx context.Context, channel string) error {
	s := e.get(channel)
	s.subs++
	s.mu.Unlock()
	return nil
}

// Unsubscribe implements hub.Engine.
func (e *Engine) Unsubscribe(ctx context.Context, channel string) error {
	s := e.get(channel)
	if s.subs > 0 {
		s.subs--
	}
	s.lastUsed = e.cfg.Now()
	s.mu.Unlock()
	return nil
}

func (s *stream) appendLocked(p *hub.Publication, size int) {
	if size == 0 {
		return
	}
	if s.n < len(s.ring) {
		s.ring[(s.head+s.n)%len(s.ring)] = p
		s.n++
		return
	}
	if len(s.ring) < size {
		// Grow: unroll into a larger slice, so small channels stay small.
		grown := make([]*hub.Publication, min(max(2*len(s.ring), 8), size))
		for i := range s.n {
			grown[i] = s.ring[(s.head+i)%len(s.ring)]
		}
		s.ring, s.head = grown, 0
		s.ring[s.n] = p
		s.n++
		return
	}
	// Full: overwrite the oldest.
	s.ring[s.head] = p
	s.head = (s.head + 1) % len(s.ring)
}

func (s *stream) trimLocked(now time.Time, ttl time.Duration) {
	cutoff := now.Add(-ttl).UnixMilli()
	for s.n > 0 && s.ring[s.head].Time < cutoff {
		s.ring[s.head] = nil
		s.head = (s.head + 1) % len(s.ring)
		s.n--
	}
	if s.n == 0 && len(s.ring) > 8 {
		s.ring, s.head = nil, 0 // give the memory back
	}
}

// newEpoch returns 10 random characters of [a-z0-9].
func newEpoch() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b [10]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}
