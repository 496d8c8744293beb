package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/duplexhq/duplex/msg"
)

// Config configures a Hub. The zero value of each field but Engine is usable.
type Config struct {
	// Engine stores offsets and history and delivers publications. Required.
	Engine Engine
	// Logger receives the hub's logs. Nil means slog.Default().
	Logger *slog.Logger
	// MaxMessage is the largest publication data, in bytes, as compact
	// JSON. Zero means 65536.
	MaxMessage int
	// MaxChannels bounds the channels one session subscribes to. Zero
	// means 128.
	MaxChannels int
	// QueueMessages bounds the live items waiting in one session's queue.
	// A session that overflows is closed with msg.CloseSlow. Replay items
	// do not count (the engine's history bounds them). Zero means 4096.
	QueueMessages int
	// QueueBytes bounds the bytes waiting in one session's queue. Zero
	// means 16 MiB.
	QueueBytes int
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = 65536
	}
	if c.MaxChannels <= 0 {
		c.MaxChannels = 128
	}
	if c.QueueMessages <= 0 {
		c.QueueMessages = 4096
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = 16 << 20
	}
	return c
}

// Hub routes publications from its Engine to subscribed sessions. It is safe
// for concurrent use. Call Shutdown when done.
type Hub struct {
	cfg    Config
	engine Engine
	log    *slog.Logger

	mu sync.RWMutex // guards channels, sessions, closed
	// channels holds the channels with at least one subscribed session.
	channels map[string]*channel
	sessions map[*Session]struct{}
	closed   bool

	active sync.WaitGroup // one per session not yet released

	// Counters for metrics.
	published atomic.Uint64
	delivered atomic.Uint64
	slowCuts  atomic.Uint64
	lostSigs  atomic.Uint64
}

// channel is the hub-side list of sessions subscribed to one channel.
type channel struct {
	mu   sync.Mutex // guards subs
	subs map[*Session]struct{}
}

// ErrShutdown is returned by the hub once Shutdown has begun.
var ErrShutdown = &msg.Error{Code: msg.CodeUnavailable, Message: "hub is shutting down"}

// New returns a Hub over cfg.Engine and starts the engine.
func New(ctx context.Context, cfg Config) (*Hub, error) {
	if cfg.Engine == nil {
		return nil, errors.New("hub: Config.Engine is nil")
	}
	cfg = cfg.withDefaults()
	h := &Hub{
		cfg:      cfg,
		engine:   cfg.Engine,
		log:      cfg.Logger,
		channels: make(map[string]*channel),
		sessions: make(map[*Session]struct{}),
	}
	if err := h.engine.Start(ctx, Handlers{Deliver: h.deliver, Lost: h.lost}); err != nil {
		return nil, err
	}
	return h, nil
}

// Config returns the hub's configuration with defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

// Stats are counters since the hub started.
type Stats struct {
	Published, Delivered, SlowCuts uint64
	// Lost counts the engine's "publications of a channel may have been
	// missed" signals (see Handlers.Lost).
	Lost               uint64
	Sessions, Channels int
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	s := Stats{Sessions: len(h.sessions), Channels: len(h.channels)}
	h.mu.Unlock()
	s.Published = h.published.Load()
	s.Delivered = h.delivered.Load()
	s.SlowCuts = h.slowCuts.Load()
	s.Lost = h.lostSigs.Load()
	return s
}

// ValidateData checks publication data: it must be valid JSON of at most
// MaxMessage bytes once compacted. It returns the compact form.
func (h *Hub) ValidateData(data []byte) (json.RawMessage, error) {
	if len(data) > 2*h.cfg.MaxMessage+1024 {
		// Far too big even before compaction: don't spend work on it.
		return nil, msg.Errorf(msg.CodeTooLarge, "message is larger than %d bytes", h.cfg.MaxMessage)
	}
	var buf bytes.Buffer
	buf.Grow(len(data))
	if err := json.Compact(&buf, data); err != nil {
		return nil, msg.Errorf(msg.CodeInvalidJSON, "data is not valid JSON: %v", err)
	}
	if buf.Len() == 0 {
		return nil, msg.Errorf(msg.CodeInvalidJSON, "data is empty")
	}
	if buf.Len() > h.cfg.MaxMessage {
		return nil, msg.Errorf(msg.CodeTooLarge, "message is %d bytes, larger than %d", buf.Len(), h.cfg.MaxMessage)
	}
	return buf.Bytes(), nil
}

// Publish validates data (see ValidateData), appends it to channel and
// returns where it landed. It never waits for a subscriber.
func (h *Hub) Publish(ctx context.Context, channel string, data []byte) (*Publication, error) {
	if !msg.ValidChannel(channel) {
		return nil, invalidChannel(channel)
	}
	compact, err := h.ValidateData(data)
	if err != nil {
		return nil, err
	}
	if h.isClosed() {
		return nil, ErrShutdown
	}
	p, err := h.engine.Publish(ctx, channel, compact)
	if err != nil {
		return nil, engineError(err)
	}
	h.published.Add(1)
	return p, nil
}

// History returns up to limit publications of channel after offset after,
// and the channel's state.
func (h *Hub) History(ctx context.Context, channel string, after uint64, limit int) (StreamState, []*Publication, error) {
	if !msg.ValidChannel(channel) {
		return StreamState{}, nil, invalidChannel(channel)
	}
	st, pubs, err := h.engine.History(ctx, channel, HistoryQuery{After: after, Limit: limit})
	if err != nil {
		return StreamState{}, nil, engineError(err)
	}
	return st, pubs, nil
}

// Info returns the state of channel and the number of sessions of this hub
// subscribed to it.
func (h *Hub) Info(ctx context.Context, channel string) (msg.ChannelInfo, error) {
	st, _, err := h.History(ctx, channel, 0, 0)
	if err != nil {
		return msg.ChannelInfo{}, err
	}
	n := 0
	h.mu.Lock()
	if ch := h.channels[channel]; ch != nil {
		ch.mu.Lock()
		n = len(ch.subs)
		ch.mu.Unlock()
	}
	h.mu.Unlock()
	return msg.ChannelInfo{Channel: channel, Epoch: st.Epoch, Oldest: st.Oldest, Latest: st.Latest, Subscribers: n}, nil
}

// deliver is the engine's Handler: it queues p on every session subscribed
// to p.Channel. It never blocks on a session.
func (h *Hub) deliver(p *Publication) {
	h.mu.RLock()
	ch := h.channels[p.Channel]
	h.mu.RUnlock()
	if ch == nil {
		return
	}
	var queued uint64
	ch.mu.Lock()
	for s := range ch.subs {
		if s.push(p) {
			queued++
		}
	}
	ch.mu.Unlock()
	h.delivered.Add(queued)
}

// attach registers s on name so deliver reaches it.
func (h *Hub) attach(name string, s *Session) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrShutdown
	}
	ch := h.channels[name]
	if ch == nil {
		ch = &channel{subs: make(map[*Session]struct{})}
		h.channels[name] = ch
	}
	ch.mu.Lock()
	ch.subs[s] = struct{}{}
	ch.mu.Unlock()
	return nil
}

// detach removes s from name.
func (h *Hub) detach(name string, s *Session) {
	h.mu.Lock()
	if ch := h.channels[name]; ch != nil {
		ch.mu.Lock()
		delete(ch.subs, s)
		empty := len(ch.subs) == 0
		ch.mu.Unlock()
		if empty {
			delete(h.channels, name)
		}
	}
	h.mu.Unlock()
}

func (h *Hub) isClosed() bool {
	// A read lock: every publish asks, and they must not queue behind each
	// other (or behind deliver's read lock) for it.
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.closed
}

// Shutdown refuses new sessions, closes every session with
// msg.CloseShutdown, and waits until their owners have released them (see
// Session.Release) or ctx is done. It then closes the engine.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	sessions := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		sessions = append(sessions, s)
	}
	h.mu.Unlock()
	for _, s := range sessions {
		s.Close(msg.CloseShutdown, "hub shutting down")
	}
	done := make(chan struct{})
	go func() { h.active.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if cerr := h.engine.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

func invalidChannel(name string) error {
	if len(name) > 40 {
		name = name[:40] + "..."
	}
	return msg.Errorf(msg.CodeInvalidChannel, "invalid channel name %q: 1-128 bytes of A-Z a-z 0-9 _ . : @ -", name)
}

// engineError keeps protocol errors and context errors as they are and
// marks anything else from the engine as unavailable.
func engineError(err error) error {
	if err == nil {
		return nil
	}
	var me *msg.Error
	if errors.As(err, &me) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &msg.Error{Code: msg.CodeUnavailable, Message: "engine: " + err.Error()}
}
