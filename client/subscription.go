package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// Event is one thing a subscription delivers: a message, a gap notice
// saying that messages of a channel are gone, or (SubscribeOptions.JoinLeave)
// a join or leave, which has no offset and does not move the cursor.
// Exactly one field is set.
type Event struct {
	Message  *msg.Envelope
	Gap      *msg.Gap
	Presence *msg.PresenceEvent
}

// Channel returns the channel the event is about.
func (e Event) Channel() string {
	if e.Message != nil {
		return e.Message.Channel
	}
	if e.Gap != nil {
		return e.Gap.Channel
	}
	if e.Presence != nil {
		return e.Presence.Channel
	}
	return ""
}

// AppendJSON appends the event's wire form (an envelope or a gap notice,
// one JSON object) to b.
func (e Event) AppendJSON(b []byte) []byte {
	switch {
	case e.Message != nil:
		return e.Message.AppendJSON(b)
	case e.Gap != nil:
		g := *e.Gap
		return g.AppendJSON(b)
	case e.Presence != nil:
		p := *e.Presence
		return p.AppendJSON(b)
	}
	return append(b, "null"...)
}

// SubscribeOptions adjust one subscription. A nil *SubscribeOptions is the
// zero value.
type SubscribeOptions struct {
	// Cursor is where to start, per channel: after the given offset of
	// the given epoch (msg.DESIGN §2). Channels without an entry start at
	// "now". An entry for a channel not subscribed is an error. Nil means
	// every channel starts at now.
	Cursor msg.Cursor
	// Buffer is how many events may wait for Next before the subscription
	// stops reading from the hub. Zero means 256.
	Buffer int
	// JoinLeave asks for the joins and leaves of the channels, which
	// must all have presence on the hub (its --presence). They come as
	// Events with Presence set, in order with the messages as the
	// transport delivers them; those that happen while the subscription
	// reconnects are not replayed. False means none.
	JoinLeave bool
	// Info is the small JSON value the subscription's member shows in
	// the presence of its channels. Nil means none.
	Info json.RawMessage
}

// Subscription delivers the messages of some channels, in offset order per
// channel, each once, across reconnects and transport fallbacks. Next must
// be called from one goroutine at a time; Cursor and Close may be called
// from any. Call Close when done.
type Subscription struct {
	c        *Client
	channels []string
	subset   map[string]bool

	events chan Event
	ready  chan struct{} // closed when first in place
	done   chan struct{} // closed when run returns; err is set then
	cancel context.CancelFunc
	err    error

	// joinLeave and info are SubscribeOptions'; pollClient the client
	// id of its long polls. All fixed.
	joinLeave  bool
	info       json.RawMessage
	pollClient string

	mu        sync.Mutex // guards processed, transport, readyOnce
	processed msg.Cursor // after the last event Next returned
	transport Transport  // the transport in use or last tried
	isReady   bool

	// Owned by the run goroutine.
	recv msg.Cursor // after the last event queued for Next
}

// Subscribe subscribes to channels and returns once the subscription is in
// place on the hub (so a message published after Subscribe returns is
// delivered), or with an error when ctx ends first or the hub refuses the
// subscription for good. The subscription lives until Close or
// Client.Close, reconnecting as needed; ctx only bounds the wait.
func (c *Client) Subscribe(ctx context.Context, channels []string, opts *SubscribeOptions) (*Subscription, error) {
	var o SubscribeOptions
	if opts != nil {
		o = *opts
	}
	if len(channels) == 0 {
		return nil, errors.New("client: subscribe: no channels")
	}
	subset := make(map[string]bool, len(channels))
	for _, ch := range channels {
		if !msg.ValidChannel(ch) {
			return nil, msg.Errorf(msg.CodeInvalidChannel, "invalid channel name %q", ch)
		}
		if subset[ch] {
			return nil, msg.Errorf(msg.CodeInvalidChannel, "channel %q given twice", ch)
		}
		subset[ch] = true
	}
	recv := make(msg.Cursor, len(channels))
	for ch, pos := range o.Cursor {
		if !subset[ch] {
			return nil, msg.Errorf(msg.CodeInvalidCursor, "cursor names channel %q, which is not subscribed", ch)
		}
		if pos.Epoch != "" && !msg.ValidEpoch(pos.Epoch) {
			return nil, msg.Errorf(msg.CodeInvalidCursor, "invalid epoch %q for channel %q", pos.Epoch, ch)
		}
		recv[ch] = pos
	}
	if o.Buffer <= 0 {
		o.Buffer = 256
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s := &Subscription{
		c: c, channels: slices.Clone(channels), subset: subset,
		events: make(chan Event, o.Buffer),
		ready:  make(chan struct{}), done: make(chan struct{}),
		cancel: cancel, processed: recv.Clone(), recv: recv,
		joinLeave: o.JoinLeave, info: slices.Clone(o.Info), pollClient: newPollClient(),
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	go s.run(runCtx)

	select {
	case <-s.ready:
		return s, nil
	case <-s.done:
		s.Close()
		return nil, fmt.Errorf("client: subscribe: %w", s.err)
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
}

// Channels returns the subscribed channels.
func (s *Subscription) Channels() []string { return slices.Clone(s.channels) }

// Transport returns the transport in use (or last tried).
func (s *Subscription) Transport() Transport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.transport
}

// Next returns the next event. It blocks until one arrives, ctx ends, or
// the subscription ends: then it returns the reason, ErrClosed after Close.
// Events queued before the end are returned first.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	select {
	case ev := <-s.events:
		s.markProcessed(ev)
		return ev, nil
	default:
	}
	select {
	case ev := <-s.events:
		s.markProcessed(ev)
		return ev, nil
	case <-s.done:
		select {
		case ev := <-s.events:
			s.markProcessed(ev)
			return ev, nil
		default:
		}
		return Event{}, s.err
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// markProcessed records that Next returned ev.
func (s *Subscription) markProcessed(ev Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case ev.Message != nil:
		s.processed.AdvanceMessage(ev.Message.Channel, ev.Message.Epoch, ev.Message.Offset)
	case ev.Gap != nil:
		s.processed.AdvanceGap(ev.Gap.Channel, ev.Gap.Epoch, ev.Gap.Next)
	}
}

// Cursor returns the cursor after the last event Next returned: pass it as
// SubscribeOptions.Cursor (or --cursor) to resume without loss or
// duplicate. Channels for which nothing arrived yet hold the position at
// which the subscription started, once known.
func (s *Subscription) Cursor() msg.Cursor {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.processed.Clone()
}

// Close ends the subscription and waits for its goroutine. Next then
// returns ErrClosed. It is safe to call more than once.
func (s *Subscription) Close() error {
	s.cancel()
	<-s.done
	s.c.mu.Lock()
	delete(s.c.subs, s)
	s.c.mu.Unlock()
	return nil
}

// attempt is what one connection did, for fallback and backoff decisions.
type attempt struct {
	t         Transport
	opened    bool
	openedAt  time.Time
	delivered bool
}

// run connects, reads and reconnects until ctx ends or an error is fatal.
func (s *Subscription) run(ctx context.Context) {
	var err error
	defer func() {
		if ctx.Err() != nil {
			err = ErrClosed
		}
		s.err = err
		close(s.done)
	}()
	log := s.c.opts.Logger
	failures := 0 // reconnects since the last healthy connection
	for {
		t := s.c.Transport()
		s.mu.Lock()
		s.transport = t
		s.mu.Unlock()
		a := &attempt{t: t}
		err = s.connect(ctx, a)
		if ctx.Err() != nil {
			return
		}
		if s.c.opts.OnDisconnect != nil {
			s.c.opts.OnDisconnect(t, err)
		}
		healthy := a.opened && (a.delivered || time.Since(a.openedAt) >= s.c.opts.StableAfter)
		if s.c.auto != nil {
			switch {
			case isUnsupported(err) || (errors.Is(err, ErrProtocol) && !fatalEvenForAuto(err)):
				if s.c.auto.unsupported(t, log, err) {
					continue // next transport at once
				}
			case healthy:
				s.c.auto.healthy(t)
			case a.opened:
				s.c.auto.failedAfterOpen(t, s.c.opts.MaxFailures, log, err)
			}
		}
		if fatal(err) {
			return
		}
		if healthy {
			failures = 0
		}
		wait := backoff(s.c.opts.MinBackoff, s.c.opts.MaxBackoff, failures)
		var se *StatusError
		if errors.As(err, &se) && se.RetryAfter > wait {
			wait = min(se.RetryAfter, s.c.opts.MaxBackoff)
		}
		failures++
		log.Debug("duplex client: reconnecting", "transport", t, "err", err, "wait", wait)
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return
		}
	}
}

// fatalEvenForAuto is for errors no other transport can help with.
func fatalEvenForAuto(err error) bool {
	var me *msg.Error
	return errors.As(err, &me)
}

// backoff returns the full-jitter wait before reconnect number n (from 0).
func backoff(lo, hi time.Duration, n int) time.Duration {
	ceil := hi
	if n < 30 {
		if c := lo << n; c > 0 && c < hi {
			ceil = c
		}
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1))
}

// connect runs one connection of transport a.t until it ends.
func (s *Subscription) connect(ctx context.Context, a *attempt) error {
	switch a.t {
	case WebSocket:
		return s.runWS(ctx, a)
	case SSE:
		return s.runSSE(ctx, a)
	case Stream:
		return s.runStream(ctx, a)
	case Poll:
		return s.runPoll(ctx, a)
	}
	return fmt.Errorf("unknown transport %q", a.t)
}

// opened records that a connection opened.
func (s *Subscription) opened(a *attempt) {
	a.opened = true
	a.openedAt = time.Now()
	if s.c.opts.OnConnect != nil {
		s.c.opts.OnConnect(a.t)
	}
}

// inPlace records that the hub has the subscription in place, with
// positions for every channel (so a reconnect misses nothing).
func (s *Subscription) inPlace() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isReady {
		s.isReady = true
		close(s.ready)
	}
}

// hint records the hub's position for a channel that has none yet: where
// a subscription that started at "now" stands.
func (s *Subscription) hint(ch string, pos msg.Position) {
	if !s.subset[ch] {
		return
	}
	if _, ok := s.recv[ch]; ok {
		return
	}
	s.recv[ch] = pos
	s.mu.Lock()
	if _, ok := s.processed[ch]; !ok {
		s.processed[ch] = pos
	}
	s.mu.Unlock()
}

// hintCursor applies hint to every entry of a cursor text from the hub.
func (s *Subscription) hintCursor(text string) error {
	cur, err := msg.ParseCursor(text)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	for ch, pos := range cur {
		if !s.subset[ch] {
			return fmt.Errorf("%w: cursor names channel %q, which is not subscribed", ErrProtocol, ch)
		}
		s.hint(ch, pos)
	}
	return nil
}

// knowsAll reports whether every channel has a position.
func (s *Subscription) knowsAll() bool {
	return len(s.recv) == len(s.channels)
}

// deliverMessage queues e for Next unless it is a duplicate. A message
// that does not follow the previous one of its channel is preceded by a
// gap notice the client makes up, so that no loss goes unreported even if
// the hub failed to report it.
func (s *Subscription) deliverMessage(ctx context.Context, a *attempt, e *msg.Envelope) error {
	if err := checkEnvelope(e); err != nil {
		return err
	}
	if !s.subset[e.Channel] {
		return fmt.Errorf("%w: message for channel %q, which is not subscribed", ErrProtocol, e.Channel)
	}
	pos, ok := s.recv[e.Channel]
	if ok && pos.Epoch != "" {
		hole := false
		if e.Epoch == pos.Epoch {
			if e.Offset <= pos.Offset {
				return nil // duplicate
			}
			hole = e.Offset > pos.Offset+1
		} else {
			hole = !(pos.Offset == 0 && e.Offset == 1)
		}
		if hole {
			g := &msg.Gap{Type: msg.TypeGap, Channel: e.Channel, Epoch: e.Epoch, Next: e.Offset}
			if err := s.queue(ctx, Event{Gap: g}); err != nil {
				return err
			}
		}
	}
	s.recv.AdvanceMessage(e.Channel, e.Epoch, e.Offset)
	a.delivered = true
	return s.queue(ctx, Event{Message: e})
}

// deliverGap queues g for Next unless it tells nothing new.
func (s *Subscription) deliverGap(ctx context.Context, a *attempt, g *msg.Gap) error {
	if err := checkGap(g); err != nil {
		return err
	}
	if !s.subset[g.Channel] {
		return fmt.Errorf("%w: gap for channel %q, which is not subscribed", ErrProtocol, g.Channel)
	}
	if pos, ok := s.recv[g.Channel]; ok && pos.Epoch == g.Epoch && g.Next <= pos.Offset+1 {
		return nil
	}
	s.recv.AdvanceGap(g.Channel, g.Epoch, g.Next)
	a.delivered = true
	return s.queue(ctx, Event{Gap: g})
}

func (s *Subscription) queue(ctx context.Context, ev Event) error {
	select {
	case s.events <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wireCursor is the cursor to send on (re)connect: the position after the
// last queued event of each channel that has one.
func (s *Subscription) wireCursor() string {
	return s.recv.String()
}

// frame is any JSON object the hub sends on a stream or WebSocket; one
// struct so that each line is decoded once.
type frame struct {
	Type     string          `json:"type"`
	ID       uint64          `json:"id"`
	Channel  string          `json:"channel"`
	Epoch    string          `json:"epoch"`
	Offset   uint64          `json:"offset"`
	Time     int64           `json:"time"`
	Data     json.RawMessage `json:"data"`
	Next     uint64          `json:"next"`
	Cursor   string          `json:"cursor"`
	Code     msg.Code        `json:"code"`
	Message  string          `json:"message"`
	Messages []msg.Envelope  `json:"messages"`
	Oldest   uint64          `json:"oldest"`
	Latest   uint64          `json:"latest"`
	Client   string          `json:"client"`
	User     string          `json:"user"`
	Info     json.RawMessage `json:"info"`
	// Members, Clients and Users answer presence and presence_stats.
	Members []msg.Member `json:"members"`
	Clients int          `json:"clients"`
	Users   int          `json:"users"`
}

func (f *frame) presence() *msg.PresenceEvent {
	info := f.Info
	if string(info) == "null" {
		info = nil
	}
	return &msg.PresenceEvent{Type: f.Type, Channel: f.Channel, Client: f.Client, User: f.User, Info: info}
}

// deliverPresence queues a join or leave for Next.
func (s *Subscription) deliverPresence(ctx context.Context, ev *msg.PresenceEvent) error {
	if err := checkPresence(ev); err != nil {
		return err
	}
	if !s.subset[ev.Channel] {
		return fmt.Errorf("%w: %s for channel %q, which is not subscribed", ErrProtocol, ev.Type, ev.Channel)
	}
	return s.queue(ctx, Event{Presence: ev})
}

// checkPresence checks a join or leave from the hub.
func checkPresence(ev *msg.PresenceEvent) error {
	if !msg.ValidChannel(ev.Channel) || ev.Client == "" || (ev.Type != msg.TypeJoin && ev.Type != msg.TypeLeave) {
		return fmt.Errorf("%w: malformed %s event for %q", ErrProtocol, ev.Type, ev.Channel)
	}
	return nil
}

// decodeFrame decodes one JSON object. Anything else is a protocol error.
func decodeFrame(b []byte) (*frame, error) {
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v (%s)", ErrProtocol, err, quote(b))
	}
	if f.Type == "" {
		return nil, fmt.Errorf("%w: object without a type (%s)", ErrProtocol, quote(b))
	}
	return &f, nil
}

func (f *frame) envelope() *msg.Envelope {
	return &msg.Envelope{Type: f.Type, Channel: f.Channel, Epoch: f.Epoch, Offset: f.Offset, Time: f.Time, Data: f.Data}
}

func (f *frame) gap() *msg.Gap {
	return &msg.Gap{Type: f.Type, Channel: f.Channel, Epoch: f.Epoch, Next: f.Next}
}

// quote shortens b for an error message.
func quote(b []byte) string {
	const max = 64
	if len(b) > max {
		return fmt.Sprintf("%q...", b[:max])
	}
	return fmt.Sprintf("%q", b)
}

// autoState is what Auto learned: which transport works.
type autoState struct {
	mu    sync.Mutex // guards idx, fails
	idx   int
	fails int
}

var autoOrder = []Transport{WebSocket, SSE, Poll}

func (a *autoState) current() Transport {
	a.mu.Lock()
	defer a.mu.Unlock()
	return autoOrder[a.idx]
}

// unsupported falls back from t, if t is still current and not the last.
// It reports whether there is a next transport to try.
func (a *autoState) unsupported(t Transport, log *slog.Logger, err error) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if autoOrder[a.idx] != t {
		return true // someone already moved on
	}
	if a.idx == len(autoOrder)-1 {
		return false
	}
	a.idx++
	a.fails = 0
	log.Debug("duplex client: falling back", "from", t, "to", autoOrder[a.idx], "err", err)
	return true
}

func (a *autoState) healthy(t Transport) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if autoOrder[a.idx] == t {
		a.fails = 0
	}
}

func (a *autoState) failedAfterOpen(t Transport, max int, log *slog.Logger, err error) {
	a.mu.Lock()
	if autoOrder[a.idx] != t {
		a.mu.Unlock()
		return
	}
	a.fails++
	over := a.fails >= max
	a.mu.Unlock()
	if over {
		a.unsupported(t, log, fmt.Errorf("failed %d times in a row after opening: %w", max, err))
	}
}
