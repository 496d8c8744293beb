package hub

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// Presence: which sessions are in a channel, and who joined or left.
//
// A session subscribed (with SubscribeOptions.Member) to a channel that
// Config.Presence matches is a member of it until it unsubscribes or is
// released. The engine keeps the members (PresenceEngine), so that every
// hub on one store sees them all, and brings joins and leaves back to every
// hub through Handlers.Presence, over the same per-channel delivery as the
// publications: a session that asked for them (SubscribeOptions.JoinLeave)
// gets them queued in order with the channel's messages. They are not
// messages: no offset, no cursor move, not counted in Stats.Delivered.
//
// Lock order: presenceReg.mu is a leaf; localMember.mu is taken before
// presenceReg.mu, never while holding it, and is held across the engine's
// Join or Leave so that one client's calls reach the engine in order.

// PresenceEngine is the part of an engine that keeps channel members. Both
// engines of this repository implement it; a hub whose Config.Presence is
// set needs an engine that does.
type PresenceEngine interface {
	// Join makes m a member of channel, or refreshes it if m.Client is a
	// member already (no second join event). A new member is announced
	// to Handlers.Presence of every engine instance subscribed to
	// channel, in order with the channel's publications.
	Join(ctx context.Context, channel string, m msg.Member) error
	// Leave ends the membership of client in channel and announces it;
	// a client that is not a member is left alone.
	Leave(ctx context.Context, channel, client string) error
	// Members returns the members of channel, in no particular order.
	Members(ctx context.Context, channel string) ([]msg.Member, error)
	// PresenceStats returns how many clients, and distinct non-empty
	// users, are members of channel, without reading every member.
	PresenceStats(ctx context.Context, channel string) (clients, users int, err error)
}

// PresenceEvent is one join or leave, encoded once for every session.
type PresenceEvent struct {
	msg.PresenceEvent
	// JSON is the event as transports write it. Never modify it.
	JSON []byte
}

// NewPresenceEvent returns the event typ (msg.TypeJoin or msg.TypeLeave) of
// member m in channel, with its encoding made.
func NewPresenceEvent(typ, channel string, m msg.Member) *PresenceEvent {
	ev := &PresenceEvent{PresenceEvent: msg.PresenceEvent{Type: typ, Channel: channel,
		Client: m.Client, User: m.User, Info: m.Info}}
	ev.JSON = ev.AppendJSON(make([]byte, 0, 64+len(channel)+len(m.Client)+len(m.User)+len(m.Info)))
	return ev
}

// DefaultMaxPresenceInfo is Config.MaxPresenceInfo when it is zero.
const DefaultMaxPresenceInfo = 1024

// ErrPresenceOff is wrapped by the errors about a channel without presence.
func presenceOff(channel string) error {
	return msg.Errorf(msg.CodePresenceOff, "presence is not enabled on channel %q (see --presence)", channel)
}

// PresenceEnabled reports whether channel keeps presence.
func (h *Hub) PresenceEnabled(channel string) bool {
	return h.cfg.Presence != nil && h.pengine != nil && h.cfg.Presence(channel)
}

// ValidateInfo checks a member's info: compact JSON of at most
// Config.MaxPresenceInfo bytes. Empty info is none (nil).
func (h *Hub) ValidateInfo(info []byte) (json.RawMessage, error) {
	if len(info) == 0 {
		return nil, nil
	}
	c, err := msg.CompactData(info, h.cfg.MaxPresenceInfo)
	if msg.CodeOf(err) == msg.CodeTooLarge {
		return nil, msg.Errorf(msg.CodeInfoTooLarge, "info is over %d bytes as compact JSON", h.cfg.MaxPresenceInfo)
	}
	if err != nil {
		return nil, err
	}
	if string(c) == "null" {
		return nil, nil
	}
	return c, nil
}

// Members returns the members of channel.
func (h *Hub) Members(ctx context.Context, channel string) ([]msg.Member, error) {
	if err := h.checkPresence(channel); err != nil {
		return nil, err
	}
	ectx, cancel := h.engineContext(ctx)
	defer cancel()
	ms, err := h.pengine.Members(ectx, channel)
	if err != nil {
		return nil, h.callError(ctx, err)
	}
	if ms == nil {
		ms = []msg.Member{}
	}
	return ms, nil
}

// PresenceStats returns the counts of channel's members.
func (h *Hub) PresenceStats(ctx context.Context, channel string) (msg.PresenceStats, error) {
	if err := h.checkPresence(channel); err != nil {
		return msg.PresenceStats{}, err
	}
	ectx, cancel := h.engineContext(ctx)
	defer cancel()
	c, u, err := h.pengine.PresenceStats(ectx, channel)
	if err != nil {
		return msg.PresenceStats{}, h.callError(ctx, err)
	}
	return msg.PresenceStats{Channel: channel, Clients: c, Users: u}, nil
}

func (h *Hub) checkPresence(channel string) error {
	if !msg.ValidChannel(channel) {
		return invalidChannel(channel)
	}
	if !h.PresenceEnabled(channel) {
		return presenceOff(channel)
	}
	return nil
}

// deliverPresence is the engine's Handlers.Presence: it queues ev on every
// session of the channel that asked for joins and leaves.
func (h *Hub) deliverPresence(ev *PresenceEvent) {
	h.mu.RLock()
	ch := h.channels[ev.Channel]
	h.mu.RUnlock()
	if ch == nil {
		return
	}
	var grew int64
	ch.mu.Lock()
	for s := range ch.subs {
		grew += int64(s.pushPresence(ev))
	}
	ch.mu.Unlock()
	h.presenceEvents.Add(1)
	h.queuedGrew(grew)
}

// pushPresence queues ev if the session's subscription to its channel asked
// for it, and returns the bytes queued.
func (s *Session) pushPresence(ev *PresenceEvent) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.subs[ev.Channel]
	if st == nil || s.closed || !st.joinLeave {
		return 0
	}
	_, n := s.enqueueLocked(Item{Event: ev})
	return n
}

// presenceReg counts this hub's sessions per member, so that one client
// seen by several sessions (a long-poll reader: a session per request) is
// one member, joined by the first and left by the last, after a linger.
type presenceReg struct {
	mu      sync.Mutex // guards members, closed, and localMember.refs, ops, leave
	members map[memberKey]*localMember
	closed  bool
	ops     sync.WaitGroup // leaves running on timers
}

type memberKey struct{ channel, client string }

type localMember struct {
	// mu is held across the engine's Join and Leave of this member; see
	// the lock order at the top of the file.
	mu     sync.Mutex
	joined atomic.Bool // the engine holds the member
	// refs (sessions), ops (calls under way) and leave (the linger's
	// timer) are guarded by presenceReg.mu.
	refs  int
	ops   int
	leave *time.Timer
}

// join makes m a member of channel for one more session.
func (h *Hub) join(ctx context.Context, channel string, m msg.Member) error {
	r := &h.presence
	k := memberKey{channel, m.Client}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrShutdown
	}
	lm := r.members[k]
	if lm == nil {
		lm = &localMember{}
		r.members[k] = lm
	}
	lm.refs++
	lm.ops++
	if lm.leave != nil {
		if lm.leave.Stop() {
			r.ops.Done() // its callback will not run
		}
		lm.leave = nil
	}
	r.mu.Unlock()

	var err error
	lm.mu.Lock()
	if !lm.joined.Load() {
		ectx, cancel := h.engineContext(ctx)
		err = h.pengine.Join(ectx, channel, m)
		cancel()
		if err == nil {
			lm.joined.Store(true)
		} else {
			err = h.callError(ctx, err)
		}
	}
	lm.mu.Unlock()

	r.mu.Lock()
	lm.ops--
	if err != nil {
		lm.refs--
	}
	r.dropLocked(k, lm)
	r.mu.Unlock()
	return err
}

// leave takes one session off the member; the last one leaves at once, or
// after linger if it is positive (a reader that comes back within it stays
// a member throughout).
func (h *Hub) leave(channel, client string, linger time.Duration) {
	r := &h.presence
	k := memberKey{channel, client}
	r.mu.Lock()
	lm := r.members[k]
	if lm == nil {
		r.mu.Unlock()
		return
	}
	if lm.refs--; lm.refs > 0 {
		r.mu.Unlock()
		return
	}
	if linger > 0 && !r.closed {
		var t *time.Timer
		r.ops.Add(1)
		t = time.AfterFunc(linger, func() {
			defer r.ops.Done()
			r.mu.Lock()
			if lm.leave != t {
				r.mu.Unlock()
				return
			}
			lm.leave = nil
			lm.ops++
			r.mu.Unlock()
			h.leaveNow(k, lm)
		})
		lm.leave = t
		r.mu.Unlock()
		return
	}
	lm.ops++
	r.mu.Unlock()
	h.leaveNow(k, lm)
}

// leaveNow tells the engine that the member left, unless a session took it
// up again meanwhile. The caller counted itself in lm.ops.
func (h *Hub) leaveNow(k memberKey, lm *localMember) {
	r := &h.presence
	lm.mu.Lock()
	r.mu.Lock()
	gone := lm.refs == 0
	r.mu.Unlock()
	if gone && lm.joined.Load() {
		ctx, cancel := h.engineContext(context.Background())
		if err := h.pengine.Leave(ctx, k.channel, k.client); err != nil {
			h.log.Warn("presence leave failed; the member expires", "channel", k.channel, "client", k.client, "err", err)
		}
		cancel()
		lm.joined.Store(false)
	}
	lm.mu.Unlock()
	r.mu.Lock()
	lm.ops--
	r.dropLocked(k, lm)
	r.mu.Unlock()
}

// dropLocked forgets lm once nothing refers to it.
func (r *presenceReg) dropLocked(k memberKey, lm *localMember) {
	if lm.refs == 0 && lm.ops == 0 && lm.leave == nil && !lm.joined.Load() && r.members[k] == lm {
		delete(r.members, k)
	}
}

// closePresence ends the lingers at once: their members leave now, before
// the engine closes.
func (h *Hub) closePresence() {
	r := &h.presence
	r.mu.Lock()
	r.closed = true
	var due []memberKey
	for k, lm := range r.members {
		if lm.leave != nil && lm.leave.Stop() {
			r.ops.Done() // its callback will not run
			lm.leave = nil
			lm.ops++
			due = append(due, k)
		}
	}
	lms := make([]*localMember, len(due))
	for i, k := range due {
		lms[i] = r.members[k]
	}
	r.mu.Unlock()
	for i, k := range due {
		h.leaveNow(k, lms[i])
	}
	r.ops.Wait()
}

// errNoPresenceEngine is returned by New for a Config.Presence over an
// engine without presence.
var errNoPresenceEngine = errors.New("hub: Config.Presence is set but the engine keeps no presence")

// becomeMember makes the session a member of channel, which start has just
// subscribed; on failure it undoes the subscription. The caller holds
// s.subMu.
func (s *Session) becomeMember(ctx context.Context, channel string, st *subState, m msg.Member, linger time.Duration) error {
	if m.Joined == 0 {
		m.Joined = time.Now().UnixMilli()
	}
	err := s.h.join(ctx, channel, m)
	if err == nil {
		s.mu.Lock()
		st.member, st.linger = m.Client, linger
		s.mu.Unlock()
		return nil
	}
	s.h.detach(channel, s)
	uctx, cancel := s.h.engineContext(context.WithoutCancel(ctx))
	_ = s.h.engine.Unsubscribe(uctx, channel)
	cancel()
	return err
}
