package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// Item is one entry of a session's queue: exactly one of Pub, Gap, Event and
// Raw is set.
type Item struct {
	Pub *Publication
	Gap *msg.Gap
	// Event is a join or leave (presence.go); it does not move a cursor.
	Event *PresenceEvent
	// Raw is a frame the session's transport queued itself with
	// Session.Send (a WebSocket reply, say), kept in order with the rest.
	Raw []byte
}

func (it Item) size() int {
	switch {
	case it.Pub != nil:
		return len(it.Pub.JSON)
	case it.Gap != nil:
		return 64 + len(it.Gap.Channel)
	case it.Event != nil:
		return len(it.Event.JSON)
	default:
		return len(it.Raw)
	}
}

// Advance moves c past it: to the publication's position, or to just before
// the gap's next offset.
func (it Item) Advance(c msg.Cursor) {
	switch {
	case it.Pub != nil:
		c.AdvanceMessage(it.Pub.Channel, it.Pub.Epoch, it.Pub.Offset)
	case it.Gap != nil:
		c.AdvanceGap(it.Gap.Channel, it.Gap.Epoch, it.Gap.Next)
	}
}

// Session is one reader of the hub: a set of subscribed channels and one
// bounded queue of what they deliver. A transport owns it: one goroutine
// drains it with Next (or Ready and TryNext), any goroutine may Subscribe,
// Unsubscribe, Send and Close, and the owner calls Release exactly once
// when it is done with the session.
type Session struct {
	h *Hub

	// subMu serialises Subscribe, Unsubscribe and Release, which change
	// subs with hub and engine calls in between. Taken before s.mu.
	subMu sync.Mutex

	mu         sync.Mutex // guards everything below
	subs       map[string]*subState
	queue      []Item
	spare      []Item // the batch the owner took last, until Written
	queueBytes int
	// inflight is the size of the batch the owner took last and has not
	// yet written (see Written), replay excepted. With queueBytes it is
	// what the session holds in Hub.queued (heldLocked), until Written,
	// the next take or the close.
	inflight int
	closed   bool
	closeErr *msg.CloseError
	released bool
	// replaying is set while a page of history is queued (replay.go).
	// Replay items count against the queue bounds like live ones; a page
	// is at most half of them (Hub.pageLen), so a reader that resumes
	// after being cut as slow is not cut again by its own replay.
	// replayN and replayBytes are the replay items waiting in the queue:
	// the pager reads the next page only once the owner has taken them.
	// Replay does not count in Hub.queued (see heldLocked).
	replaying   bool
	replayN     int
	replayBytes int
	// readQ lists, in order, the channels whose replay needs another page
	// of history (subState.queuedRead marks them); paging is set while
	// the session's pager goroutine runs (at most one).
	readQ  []string
	paging bool
	// notify, if set, is called (locked) whenever an item is queued or the
	// session closes; see SetNotify.
	notify func()

	ready chan struct{} // capacity 1: something was queued, or the session closed
	done  chan struct{} // closed by Close
}

// subState is a session's view of one channel.
type subState struct {
	epoch string
	last  uint64 // offset of the last publication queued
	// recovering is true while the channel's messages come from history:
	// between attach and the end of replay, and from a lost delivery or a
	// hole seen live until history has filled it. Live publications wait
	// in pending meanwhile, at most Hub.pageLen of them: older ones are
	// dropped, history holds them. stale says that pending may miss
	// publications (the engine lost some while it filled): only a history
	// read made after it can join history to live.
	recovering bool
	pending    []*Publication
	stale      bool
	queuedRead bool // in Session.readQ
	// started is set once Subscribe has set epoch and last: the pager
	// leaves the channel alone until then.
	started bool
	// joinLeave says the subscription asked for joins and leaves;
	// member is the client id the session is a member as ("" none), and
	// linger how long its leave waits (presence.go).
	joinLeave bool
	member    string
	linger    time.Duration
}

// NewSession returns a new session of h, or ErrShutdown.
func (h *Hub) NewSession() (*Session, error) {
	s := &Session{
		h:     h,
		subs:  make(map[string]*subState),
		ready: make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrShutdown
	}
	h.sessions[s] = struct{}{}
	h.active.Add(1)
	return s, nil
}

// SubscribeResult is where a channel stood when a subscription started.
type SubscribeResult struct {
	Channel string
	Epoch   string
	Offset  uint64 // latest offset at subscribe time
}

// SubscribeOptions are the optional parts of a subscription.
type SubscribeOptions struct {
	// From is the reader's position in the channel. Nil starts at "now":
	// only publications after the subscription is in place are delivered.
	From *msg.Position
	// Ack, if set, is called once the subscription is in place, with the
	// session locked; the frame it returns is queued ahead of the replay,
	// so a reply is ordered before the messages it announces.
	Ack func(SubscribeResult) []byte
	// Member, on a channel with presence (Config.Presence), makes the
	// session a member as it says, until it unsubscribes or is released;
	// Joined zero means now. Elsewhere it is ignored, unless it carries
	// Info, which is refused. Nil: not a member.
	Member *msg.Member
	// Linger delays the member's leave, so a reader that comes back
	// within it with the same client id (a long poll) stays a member.
	Linger time.Duration
	// JoinLeave asks for the channel's joins and leaves, queued in order
	// with its messages. Refused on a channel without presence.
	JoinLeave bool
}

// Subscribe adds channel to the session and queues its replay, if any.
func (s *Session) Subscribe(ctx context.Context, channel string, opts SubscribeOptions) (SubscribeResult, error) {
	if !msg.ValidChannel(channel) {
		return SubscribeResult{}, invalidChannel(channel)
	}
	presence := s.h.PresenceEnabled(channel)
	if !presence && (opts.JoinLeave || (opts.Member != nil && len(opts.Member.Info) > 0)) {
		return SubscribeResult{}, presenceOff(channel)
	}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	st := &subState{recovering: true, joinLeave: opts.JoinLeave}
	s.mu.Lock()
	switch {
	case s.released:
		s.mu.Unlock()
		return SubscribeResult{}, &msg.CloseError{Code: msg.CloseNormal, Reason: "session released"}
	case s.closed:
		s.mu.Unlock()
		return SubscribeResult{}, s.closeErr
	case s.subs[channel] != nil:
		s.mu.Unlock()
		return SubscribeResult{}, msg.Errorf(msg.CodeBadRequest, "already subscribed to %q", channel)
	case len(s.subs) >= s.h.cfg.MaxChannels:
		s.mu.Unlock()
		return SubscribeResult{}, msg.Errorf(msg.CodeBadRequest, "at most %d channels per connection", s.h.cfg.MaxChannels)
	case s.h.engineDown.Load():
		s.mu.Unlock()
		return SubscribeResult{}, ErrEngineDown
	}
	s.subs[channel] = st
	s.mu.Unlock()

	res, err := s.start(ctx, channel, st, opts)
	if err == nil && presence && opts.Member != nil {
		err = s.becomeMember(ctx, channel, st, *opts.Member, opts.Linger)
	}
	if err != nil {
		s.mu.Lock()
		delete(s.subs, channel)
		s.mu.Unlock()
		return SubscribeResult{}, err
	}
	return res, nil
}

func (s *Session) start(ctx context.Context, channel string, st *subState, opts SubscribeOptions) (SubscribeResult, error) {
	h := s.h
	parent := ctx
	ctx, cancel := h.engineContext(ctx)
	defer cancel()
	// Order matters: register for live delivery first, then read history,
	// so every publication is in the replay, in pending, or both (and the
	// offsets sort that out).
	if err := h.attach(channel, s); err != nil {
		return SubscribeResult{}, err
	}
	if err := h.engine.Subscribe(ctx, channel); err != nil {
		h.detach(channel, s)
		return SubscribeResult{}, h.callError(parent, err)
	}
	// A resume reads its first page here when the session has no other
	// replay under way; otherwise only the state, and the pager reads
	// the rest in turn (replay.go): one page per session at a time.
	// While it reads, Subscribe stands in for the pager (paging), so
	// that no other page is read meanwhile.
	q := HistoryQuery{}
	pager := false
	if opts.From != nil {
		q.After = opts.From.Offset
		s.mu.Lock()
		if !s.paging && len(s.readQ) == 0 {
			q.Limit = s.pageLimitLocked()
			pager = q.Limit > 0
			s.paging = pager
		}
		s.mu.Unlock()
	}
	state, page, err := h.engine.History(ctx, channel, q)
	if pager {
		s.mu.Lock()
		s.paging = false
		s.kickLocked()
		s.mu.Unlock()
	}
	if err != nil {
		h.detach(channel, s)
		uctx, ucancel := h.engineContext(context.WithoutCancel(ctx))
		_ = h.engine.Unsubscribe(uctx, channel)
		ucancel()
		return SubscribeResult{}, h.callError(parent, err)
	}

	res := SubscribeResult{Channel: channel, Epoch: state.Epoch, Offset: state.Latest}
	s.mu.Lock()
	if s.closed {
		// Stays in subs and attached: Release detaches it.
		s.mu.Unlock()
		return res, nil
	}
	var grew int
	if opts.Ack != nil {
		_, n := s.enqueueLocked(Item{Raw: opts.Ack(res)})
		grew += n
	}
	var queued uint64
	if opts.From == nil {
		st.epoch, st.last = state.Epoch, state.Latest
		queued, grew = s.joinLocked(channel, st, queued, grew)
	} else {
		st.epoch, st.last = opts.From.Epoch, opts.From.Offset
		queued, grew = s.applyPageLocked(channel, st, state, page, queued, grew)
	}
	s.mu.Unlock()
	h.delivered.Add(queued)
	h.queuedGrew(int64(grew))
	return res, nil
}

// Unsubscribe removes channel from the session. Items already queued stay.
func (s *Session) Unsubscribe(ctx context.Context, channel string) error {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.mu.Lock()
	st := s.subs[channel]
	delete(s.subs, channel)
	s.mu.Unlock()
	if st == nil {
		return msg.Errorf(msg.CodeBadRequest, "not subscribed to %q", channel)
	}
	if st.member != "" {
		s.h.leave(channel, st.member, st.linger)
	}
	s.h.detach(channel, s)
	ectx, cancel := s.h.engineContext(ctx)
	defer cancel()
	return s.h.callError(ctx, s.h.engine.Unsubscribe(ectx, channel))
}

// Channels returns the number of channels the session subscribes to.
func (s *Session) Channels() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// push queues a live publication and reports whether it did (a
// publication held back while the channel replays is counted when it is
// queued), and the bytes it queued, for the caller to add to Hub.queued.
// It never blocks.
func (s *Session) push(p *Publication) (bool, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.subs[p.Channel]
	if st == nil || s.closed {
		return false, 0
	}
	if st.recovering {
		s.holdLocked(st, p)
		return false, 0
	}
	return s.pushLiveLocked(p.Channel, st, p)
}

// holdLocked keeps live p in st.pending while the channel recovers. When
// pending is full its older entries are dropped, not the session: they
// are in history, which the replay reads up to p; the replay joins
// pending only where they meet (joinLocked), and history trimmed in
// between shows as a gap.
func (s *Session) holdLocked(st *subState, p *Publication) {
	if len(st.pending) >= s.h.pageLen {
		clear(st.pending)
		st.pending = st.pending[:0]
	}
	st.pending = append(st.pending, p)
}

// pushLiveLocked queues a live publication that follows what the session
// has, and skips one it has already. One that does not follow (a hole: a
// delivery the engine lost, or another epoch) is never taken for a gap as
// it stands: the channel goes back to recovering, p waits in pending and
// history says what is missing, gap or not.
func (s *Session) pushLiveLocked(channel string, st *subState, p *Publication) (bool, int) {
	if st.epoch == "" {
		// The store held no epoch for the channel when the session
		// subscribed (never published, or lost): the first epoch that
		// comes continues it, and the offset check below still tells a
		// hole from offset 1.
		st.epoch = p.Epoch
	}
	if p.Epoch == st.epoch && p.Offset <= st.last {
		return false, 0 // in both replay and live: queued once already
	}
	if p.Epoch != st.epoch || p.Offset > st.last+1 {
		st.recovering = true
		s.holdLocked(st, p)
		s.wantReadLocked(channel, st)
		return false, 0
	}
	return s.pushLocked(st, p)
}

// pushLocked queues p unless the session has it already, announcing a gap
// when p does not follow what was queued before (history, which has no
// holes of its own, skipped it: trimmed). It reports whether p was queued,
// and the bytes queued (p's and a gap's). Callers count deliveries and
// bytes in bulk: one atomic add per publication, not one per subscriber
// on the fan-out path.
func (s *Session) pushLocked(st *subState, p *Publication) (bool, int) {
	var gapBytes int
	if st.epoch == "" {
		// The store held no epoch for the channel when the session
		// subscribed (never published, or lost): the first epoch that
		// comes continues it, and the offset check below still tells a
		// hole from offset 1.
		st.epoch = p.Epoch
	}
	switch {
	case p.Epoch != st.epoch:
		// The channel's history was lost and began again.
		_, gapBytes = s.enqueueLocked(Item{Gap: &msg.Gap{Type: msg.TypeGap, Channel: p.Channel, Epoch: p.Epoch, Next: p.Offset}})
		st.epoch = p.Epoch
	case p.Offset <= st.last:
		return false, 0 // in both replay and live: queued once already
	case p.Offset > st.last+1:
		_, gapBytes = s.enqueueLocked(Item{Gap: &msg.Gap{Type: msg.TypeGap, Channel: p.Channel, Epoch: p.Epoch, Next: p.Offset}})
	}
	st.last = p.Offset
	ok, n := s.enqueueLocked(Item{Pub: p})
	return ok, gapBytes + n
}

// Send queues a transport's own frame, in order with the messages.
func (s *Session) Send(raw []byte) error {
	s.mu.Lock()
	if s.closed {
		err := s.closeErr
		s.mu.Unlock()
		return err
	}
	_, n := s.enqueueLocked(Item{Raw: raw})
	s.mu.Unlock()
	s.h.queuedGrew(int64(n))
	return nil
}

// enqueueLocked queues it, or closes the session as a slow consumer when
// the queue is full. It reports whether it was queued, and the bytes that
// count in Hub.queued, which the caller adds (queuedGrew) once it holds no
// lock.
func (s *Session) enqueueLocked(it Item) (bool, int) {
	if s.closed {
		return false, 0
	}
	n := it.size()
	// An empty queue takes one item of any size: a QueueBytes below the
	// largest frame (16 MiB messages under the default 16 MiB bound) must
	// not make that frame undeliverable to a reader that keeps up.
	if len(s.queue) >= s.h.cfg.QueueMessages || (s.queueBytes+n > s.h.cfg.QueueBytes && len(s.queue) > 0) {
		s.h.slowCuts.Add(1)
		s.closeLocked(msg.CloseSlow, fmt.Sprintf("outbound queue full (%d messages, %d bytes)", len(s.queue), s.queueBytes))
		return false, 0
	}
	counted := n
	if s.replaying {
		s.replayN++
		s.replayBytes += n
		counted = 0 // see heldLocked
	}
	s.queue = append(s.queue, it)
	s.queueBytes += n
	select {
	case s.ready <- struct{}{}:
	default:
	}
	if s.notify != nil {
		s.notify()
	}
	return true, counted
}

// heldLocked is what the session holds in Hub.queued: its queue and the
// batch its owner is writing, replays excepted. A replay is one page at a
// time (replay.go), under the session's own bounds; counting it in the
// hub-wide total would have a reader cut as slow cut again by its own
// replay as it resumes.
func (s *Session) heldLocked() int {
	return s.queueBytes - s.replayBytes + s.inflight
}

// SetNotify makes the session call f each time it queues an item and when
// it closes, besides signalling Ready: a transport can then start a writer
// only when there is something to write, instead of keeping a goroutine
// blocked on Ready. f runs with the session locked, on whatever goroutine
// queued (a publisher's, delivering): it must return at once (flip an
// atomic, start a goroutine) and must not call the session.
func (s *Session) SetNotify(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notify = f
}

// QueueLen returns how many items wait in the session's queue.
func (s *Session) QueueLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// Ready returns a channel that receives when the session may have items to
// take or has closed. Follow each receive with TryNext.
func (s *Session) Ready() <-chan struct{} { return s.ready }

// Done returns a channel closed when the session closes.
func (s *Session) Done() <-chan struct{} { return s.done }

// TryNext takes every queued item without waiting. It returns the close
// error, a *msg.CloseError, once the session is closed. The returned slice
// is valid until the next call of TryNext, Next or Written.
//
// What it takes still counts in the hub's total (Config.MaxQueuedBytes)
// until the owner calls Written or takes again: a reader that does not
// read holds its bytes in the transport's write, not in the queue, and
// the bound must see them there.
func (s *Session) TryNext() ([]Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, s.closeErr
	}
	if len(s.queue) == 0 {
		s.writtenLocked()
		return nil, nil
	}
	items := s.queue
	clear(s.spare)
	done := s.inflight
	s.queue, s.spare = s.spare[:0], items
	s.inflight, s.queueBytes = s.queueBytes-s.replayBytes, 0
	s.replayN, s.replayBytes = 0, 0
	if done != 0 {
		s.h.queued.Add(-int64(done))
	}
	// The owner has taken the page: the next one may come.
	s.kickLocked()
	return items, nil
}

// Written tells the session that its owner is done with the items it took
// last (written them, or given up): they stop counting in the hub's total
// and the session drops its references to them. Only the goroutine that
// took them may call it, before it lets another take.
func (s *Session) Written() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writtenLocked()
}

// Pending reports whether items are queued or the session has closed: a
// writer about to go idle asks it in one call.
func (s *Session) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) > 0 || s.closed
}

func (s *Session) writtenLocked() {
	clear(s.spare)
	s.spare = s.spare[:0]
	if s.inflight != 0 {
		s.h.queued.Add(-int64(s.inflight))
		s.inflight = 0
	}
}

// Next waits until items are queued, the session closes, or ctx is done,
// and takes every queued item. See TryNext.
func (s *Session) Next(ctx context.Context) ([]Item, error) {
	for {
		items, err := s.TryNext()
		if err != nil || len(items) > 0 {
			return items, err
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close ends the session with code and drops what is queued. The owner
// still calls Release. Close is idempotent; the first code wins.
func (s *Session) Close(code msg.CloseCode, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(code, reason)
}

func (s *Session) closeLocked(code msg.CloseCode, reason string) {
	if s.closed {
		return
	}
	s.closed = true
	s.closeErr = &msg.CloseError{Code: code, Reason: reason}
	// What the owner is writing right now stays in its hands until its
	// write ends (at most one write's worth, for the write timeout); the
	// session no longer holds it.
	if held := s.heldLocked(); held != 0 {
		s.h.queued.Add(-int64(held))
	}
	s.queue, s.spare, s.queueBytes, s.inflight = nil, nil, 0, 0
	s.replayN, s.replayBytes = 0, 0
	close(s.done)
	select {
	case s.ready <- struct{}{}:
	default:
	}
	if s.notify != nil {
		s.notify()
	}
	// The session stays attached to its channels (push ignores a closed
	// session) until Release: detaching takes locks ranked above s.mu.
}

// Err returns why the session closed, or nil while it is open.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeErr == nil {
		return nil
	}
	return s.closeErr
}

// Release closes the session (normally, if nothing closed it before) and
// tells the hub its owner is done with it. Call it exactly once.
func (s *Session) Release() {
	s.Close(msg.CloseNormal, "")
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.mu.Lock()
	already := s.released
	s.released = true
	subs := s.subs
	s.subs = map[string]*subState{}
	s.mu.Unlock()
	if already {
		return
	}
	// One deadline for every channel: a stalled engine holds a release
	// for EngineTimeout, not for EngineTimeout per channel.
	ctx, cancel := s.h.engineContext(context.Background())
	defer cancel()
	failed, lastErr := 0, error(nil)
	for channel, st := range subs {
		if st.member != "" {
			s.h.leave(channel, st.member, st.linger)
		}
		s.h.detach(channel, s)
		if err := s.h.engine.Unsubscribe(ctx, channel); err != nil {
			failed, lastErr = failed+1, err
		}
	}
	if failed > 0 {
		s.h.log.Warn("engine unsubscribe failed", "channels", failed, "err", lastErr)
	}
	s.h.mu.Lock()
	delete(s.h.sessions, s)
	s.h.mu.Unlock()
	s.h.active.Done()
}
