package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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
	// QueueMessages bounds the items waiting in one session's queue.
	// A session that overflows is closed with msg.CloseSlow. Replay is
	// read in pages of at most half the room left (replay.go), so a
	// replay alone never overflows it. Zero means 4096.
	QueueMessages int
	// QueueBytes bounds the bytes waiting in one session's queue. Zero
	// means 16 MiB.
	QueueBytes int
	// MaxQueuedBytes bounds the bytes held for all sessions together:
	// what waits in their queues plus the batch each transport has taken
	// and not yet written (see Session.Written). When queueing takes the
	// total past it, the sessions holding the most are closed with
	// msg.CloseSlow, largest first, until the total is back under it.
	// Zero means 256 MiB (DefaultMaxQueuedBytes); negative, no bound.
	MaxQueuedBytes int64
	// MinCutBytes is the least a session must hold to be cut by
	// MaxQueuedBytes. A reader that keeps up holds a few messages at
	// most, so a fan-out burst that passes the bound for a moment cuts
	// nobody; readers that take nothing pass it soon. Zero means 1 MiB.
	MinCutBytes int
	// EngineTimeout bounds every engine call made for a transport or a
	// session (Subscribe, Unsubscribe, History, Publish, a replay page, a
	// resync), on top of the caller's ctx, so a stalled engine never
	// holds a WebSocket reader or a shutdown for longer. A session's
	// Release unsubscribes all its channels under one EngineTimeout, not
	// one per channel. Zero means 5s.
	EngineTimeout time.Duration
	// Presence says which channels keep presence (presence.go): their
	// subscribers are members, and may ask for joins and leaves. Nil
	// means none. It needs an engine that implements PresenceEngine.
	Presence func(channel string) bool
	// MaxPresenceInfo bounds a member's info, in bytes of compact JSON.
	// Zero means 1024 (DefaultMaxPresenceInfo).
	MaxPresenceInfo int
}

// DefaultMaxQueuedBytes is MaxQueuedBytes when it is zero. Bytes are
// counted as QueueBytes counts them, once per session that holds an item,
// although a publication's encoding is shared by every session: the count
// errs high. 256 MiB lets 16 sessions be backed up to the default
// QueueBytes at once, and is well under the 600 MB that 2,000 SSE readers
// that never read were seen to take; a legitimate burst that passes it
// (a 64 KiB publication to 5,000 subscribers) cuts nobody, since no
// session holds MinCutBytes.
const DefaultMaxQueuedBytes = 256 << 20

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
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if c.MinCutBytes <= 0 {
		c.MinCutBytes = 1 << 20
	}
	if c.EngineTimeout <= 0 {
		c.EngineTimeout = 5 * time.Second
	}
	if c.MaxPresenceInfo <= 0 {
		c.MaxPresenceInfo = DefaultMaxPresenceInfo
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

	// bgMu guards bgClosed and Add on bg; it is a leaf, taken with any of
	// the other locks held (a session starts its pager locked).
	bgMu     sync.Mutex
	bgClosed bool
	bg       sync.WaitGroup // the sessions' pagers (replay.go)

	// pageLen is the most publications one page of replay holds, and one
	// recovering channel keeps pending: at most half of QueueMessages and
	// of QueueBytes (at MaxMessage each).
	pageLen int

	// Counters for metrics.
	published atomic.Uint64
	delivered atomic.Uint64
	slowCuts  atomic.Uint64

	// queued is the sum of every open session's held bytes (see
	// Session.held). Sessions subtract under their own lock; whoever
	// queues adds after, in bulk (one add per publication on the fan-out
	// path), so it may lag behind the true sum by what is being queued
	// right now, never run ahead of it. See queuedGrew.
	queued atomic.Int64
	// trimming is set while one goroutine cuts sessions over
	// MaxQueuedBytes; the others go on queueing.
	trimming atomic.Bool
	// idleScan is when (Unix nanoseconds) a trim last found no session
	// holding MinCutBytes; trims wait idleScanPause after it, so a long
	// burst over the bound does not scan every session per publication.
	idleScan atomic.Int64
	lostSigs atomic.Uint64
	// engineDown is set between the engine's Handlers.Down and Up.
	engineDown  atomic.Bool
	downs       atomic.Uint64
	replayReads atomic.Uint64

	// pengine is Engine as a PresenceEngine, nil when it is not one;
	// presence counts this hub's sessions per member (presence.go).
	pengine        PresenceEngine
	presence       presenceReg
	presenceEvents atomic.Uint64
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
		pageLen:  max(1, min(cfg.QueueMessages/2, cfg.QueueBytes/2/(cfg.MaxMessage+pubOverhead))),
		presence: presenceReg{members: make(map[memberKey]*localMember)},
	}
	h.pengine, _ = cfg.Engine.(PresenceEngine)
	if cfg.Presence != nil && h.pengine == nil {
		return nil, errNoPresenceEngine
	}
	if err := h.engine.Start(ctx, Handlers{Deliver: h.deliver, Lost: h.lost, Down: h.down, Up: h.up, Presence: h.deliverPresence}); err != nil {
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
	// missed" signals (see Handlers.Lost); ReplayReads the history pages
	// read after Subscribe's first (replay.go), resyncs included.
	Lost, ReplayReads uint64
	// EngineDowns counts the engine's Handlers.Down calls; EngineDown
	// is whether the engine is down now.
	EngineDowns uint64
	EngineDown  bool
	// PresenceEvents counts the joins and leaves the engine brought.
	PresenceEvents     uint64
	Sessions, Channels int
	// QueuedBytes is what the sessions hold now (see
	// Config.MaxQueuedBytes).
	QueuedBytes int64
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	s := Stats{Sessions: len(h.sessions), Channels: len(h.channels)}
	h.mu.Unlock()
	s.Published = h.published.Load()
	s.Delivered = h.delivered.Load()
	s.SlowCuts = h.slowCuts.Load()
	s.QueuedBytes = max(h.queued.Load(), 0)
	s.Lost = h.lostSigs.Load()
	s.ReplayReads = h.replayReads.Load()
	s.EngineDowns = h.downs.Load()
	s.EngineDown = h.engineDown.Load()
	s.PresenceEvents = h.presenceEvents.Load()
	return s
}

// ValidateData checks publication data with [msg.CompactData], the one
// check every way in shares: valid JSON whose strings are valid Unicode, at
// most MaxMessage bytes once compacted. It returns the compact form.
func (h *Hub) ValidateData(data []byte) (json.RawMessage, error) {
	return msg.CompactData(data, h.cfg.MaxMessage)
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
	ectx, cancel := h.engineContext(ctx)
	defer cancel()
	p, err := h.engine.Publish(ectx, channel, compact)
	if err != nil {
		return nil, h.callError(ctx, err)
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
	ectx, cancel := h.engineContext(ctx)
	defer cancel()
	st, pubs, err := h.engine.History(ectx, channel, HistoryQuery{After: after, Limit: limit})
	if err != nil {
		return StreamState{}, nil, h.callError(ctx, err)
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
	var grew int64
	ch.mu.Lock()
	for s := range ch.subs {
		ok, n := s.push(p)
		if ok {
			queued++
		}
		grew += int64(n)
	}
	ch.mu.Unlock()
	h.delivered.Add(queued)
	h.queuedGrew(grew)
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
	go func() {
		h.active.Wait()
		h.bgMu.Lock()
		h.bgClosed = true
		h.bgMu.Unlock()
		h.bg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	h.closePresence()
	if cerr := h.engine.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// engineContext bounds one engine call by Config.EngineTimeout.
func (h *Hub) engineContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, h.cfg.EngineTimeout)
}

// callError is engineError for a call made under engineContext(parent):
// the engine's deadline passing while parent is still live is the
// engine's failure (unavailable), not the caller's cancellation.
func (h *Hub) callError(parent context.Context, err error) error {
	if err != nil && parent.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return &msg.Error{Code: msg.CodeUnavailable, Message: fmt.Sprintf("engine: no answer within %v", h.cfg.EngineTimeout)}
	}
	return engineError(err)
}

// goBackground runs f on a goroutine the hub waits for in Shutdown, and
// reports false, running nothing, once every session has been released.
func (h *Hub) goBackground(f func()) bool {
	h.bgMu.Lock()
	defer h.bgMu.Unlock()
	if h.bgClosed {
		return false
	}
	h.bg.Go(f)
	return true
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
