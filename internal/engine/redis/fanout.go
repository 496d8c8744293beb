package redis

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// Subscribe implements hub.Engine. The first Subscribe of a channel sends
// SUBSCRIBE (SSUBSCRIBE on a Cluster); every Subscribe returns once Redis
// has confirmed it, so a publication that Redis handles after that is
// delivered, and one it handled before is in History.
func (e *Engine) Subscribe(ctx context.Context, channel string) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return errors.New("redis engine: closed")
	}
	st := e.subs[channel]
	if st == nil {
		st = &chanState{ready: make(chan struct{})}
		e.subs[channel] = st
		e.addLocked(ctx, channel, st)
	}
	fencer := false
	if st.linger != nil {
		// Back within the linger: Redis never saw it leave, so no
		// SUBSCRIBE. Messages still on their way from before are
		// dropped by offset, past the fence this call sets.
		st.linger.Stop()
		st.linger = nil
		st.fence = make(chan struct{})
		fencer = true
	}
	st.count++
	fence := st.fence
	if fence == nil {
		st.live.Store(true)
	}
	e.mu.Unlock()
	if fencer {
		return e.fence(ctx, channel, st, fence)
	}
	parent := ctx
	ctx, cancel := e.callContext(ctx)
	defer cancel()
	select {
	case <-st.ready:
	case <-ctx.Done():
		// Not in place: this call does not count.
		e.Unsubscribe(context.WithoutCancel(ctx), channel)
		return e.callError(parent, "subscribe", ctx.Err())
	}
	if fence != nil {
		select {
		case <-fence:
		case <-ctx.Done():
			e.Unsubscribe(context.WithoutCancel(ctx), channel)
			return e.callError(parent, "subscribe", ctx.Err())
		}
	}
	return nil
}

// fence brings a lingering channel back to delivery. What Redis published
// while it lingered may still be on its way on the pub/sub connection;
// those messages are in history, where the caller looks after Subscribe,
// so the reader drops every message up to the latest offset read here
// (same epoch) and delivers the rest. One read on a command connection
// instead of a SUBSCRIBE and an UNSUBSCRIBE on the pub/sub one.
func (e *Engine) fence(ctx context.Context, channel string, st *chanState, fence chan struct{}) error {
	// It lingered, maybe, before Redis had confirmed it.
	wctx, cancel := e.callContext(ctx)
	var err error
	select {
	case <-st.ready:
	case <-wctx.Done():
		err = e.callError(ctx, "subscribe", wctx.Err())
	}
	cancel()
	var state hub.StreamState
	if err == nil {
		state, _, err = e.History(ctx, channel, hub.HistoryQuery{})
	}
	st.shard.mu.Lock()
	if err == nil {
		st.skipEpoch, st.skipTo = state.Epoch, state.Latest
	}
	st.shard.mu.Unlock()
	e.mu.Lock()
	st.live.Store(st.count > 0)
	st.fence = nil
	e.mu.Unlock()
	close(fence)
	if err != nil {
		e.Unsubscribe(context.WithoutCancel(ctx), channel)
		return err
	}
	return nil
}

// Unsubscribe implements hub.Engine. From the last one on, the channel's
// messages are dropped; Config.Linger later (at once if it is negative)
// UNSUBSCRIBE is sent, without waiting for it, unless a Subscribe came
// back in between.
func (e *Engine) Unsubscribe(ctx context.Context, channel string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.subs[channel]
	if st == nil || st.count == 0 {
		return nil
	}
	if st.count--; st.count > 0 {
		return nil
	}
	st.live.Store(false)
	if e.cfg.Linger > 0 {
		st.linger = time.AfterFunc(e.cfg.Linger, func() { e.expire(channel, st) })
		return nil
	}
	e.removeLocked(context.WithoutCancel(ctx), channel, st)
	return nil
}

// expire ends a lingering subscription whose Linger has passed.
func (e *Engine) expire(channel string, st *chanState) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.subs[channel] != st || st.count > 0 {
		return
	}
	e.removeLocked(context.Background(), channel, st)
}

// removeLocked unsubscribes channel on Redis.
func (e *Engine) removeLocked(ctx context.Context, channel string, st *chanState) {
	delete(e.subs, channel)
	if st.shard.remove(ctx, channel) && e.target.Cluster {
		delete(e.shards, st.shard.key)
		st.shard.stop()
	}
}

// addLocked subscribes channel on its shard, starting the shard with the
// channel already in it if needed: a Cluster shard's first connection goes
// to the master of its channels' slot.
func (e *Engine) addLocked(ctx context.Context, channel string, st *chanState) {
	key := 0
	if e.target.Cluster {
		key = slot(e.pubsubName(channel))
	}
	if s := e.shards[key]; s != nil {
		st.shard = s
		s.add(ctx, channel, st)
		return
	}
	s := &shard{e: e, key: key, chans: map[string]*chanState{channel: st},
		pending: map[string][]*chanState{}, quit: make(chan struct{})}
	st.shard = s
	e.shards[key] = s
	e.wg.Go(s.run)
}

// shard is one pub/sub connection and the channels subscribed over it. Its
// reader goroutine (run) owns the connection's life: it connects, waits
// for the connection to end, and on any failure reconnects with backoff
// and subscribes again.
//
// s.mu is never held across a call to Redis: rueidis runs the pub/sub
// hooks (confirmed, message), which take s.mu, on the goroutine that
// reads the replies a call waits for.
type shard struct {
	e   *Engine
	key int // hash slot on a Cluster, 0 on a single Redis

	mu    sync.Mutex // guards conn, chans, pending, stopped
	conn  *psConn
	chans map[string]*chanState
	// pending holds, per channel, what each SUBSCRIBE (a state) and
	// UNSUBSCRIBE (nil) sent on conn awaits, in order: Redis confirms in
	// the order it was asked, so the front is what a confirmation is for.
	pending map[string][]*chanState
	stopped bool
	// graceTimer runs from a connection's loss until it is back or
	// DownGrace has passed; down is set after that, until it is back.
	// Both guarded by mu, changed with Engine.healthMu held.
	graceTimer *time.Timer
	down       bool

	quit chan struct{} // closed by stop
}

// add subscribes channel on the current connection, if any; a connection
// made later subscribes it anyway.
func (s *shard) add(ctx context.Context, channel string, st *chanState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chans[channel] = st
	if s.conn == nil {
		return
	}
	s.pending[channel] = append(s.pending[channel], st)
	s.conn.queue(true, s.e.pubsubName(channel))
}

// remove unsubscribes channel and reports whether the shard is now empty.
func (s *shard) remove(ctx context.Context, channel string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.chans, channel)
	if s.conn != nil {
		s.pending[channel] = append(s.pending[channel], nil)
		s.conn.queue(false, s.e.pubsubName(channel))
	}
	return len(s.chans) == 0
}

// stop closes the connection and makes run return. It does not wait for
// the close (run does): rueidis's close waits for the hooks, which take
// s.mu and call the hub, and the caller may hold Engine.mu.
func (s *shard) stop() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	close(s.quit)
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		go c.close()
	}
}

func (s *shard) run() {
	defer s.healthy() // a stopped shard is down no more
	backoff := time.Duration(0)
	for {
		c, err := s.connect()
		if c == nil && err == nil {
			return // stopped
		}
		worked := false
		if err == nil {
			s.healthy()
			err = c.wait(s.quit)
			worked = c.worked.Load()
		}
		s.mu.Lock()
		stopped := s.stopped
		if s.conn == c {
			s.conn = nil
		}
		s.mu.Unlock()
		if stopped {
			return
		}
		s.lostConnection(err)
		s.e.stats.Reconnects.Add(1)
		if backoff == 0 || worked {
			backoff = 50 * time.Millisecond
		} else {
			backoff = min(2*backoff, 2*time.Second)
		}
		s.e.log.Warn("redis engine: pub/sub connection lost; reconnecting", "err", err, "in", backoff)
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-s.quit:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// lostConnection starts the grace after which the hub is told that this
// shard cannot deliver, unless it runs already or has passed.
func (s *shard) lostConnection(err error) {
	s.e.healthMu.Lock()
	defer s.e.healthMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down || s.graceTimer != nil {
		return
	}
	s.graceTimer = time.AfterFunc(s.e.cfg.DownGrace, func() { s.graceOver(err) })
}

// graceOver marks the shard down, and the engine with it if it is the
// first shard down.
func (s *shard) graceOver(err error) {
	s.e.healthMu.Lock()
	defer s.e.healthMu.Unlock()
	s.mu.Lock()
	if s.stopped || s.graceTimer == nil || s.down {
		s.mu.Unlock()
		return
	}
	s.graceTimer, s.down = nil, true
	s.mu.Unlock()
	if s.e.downShards++; s.e.downShards == 1 {
		s.e.log.Error("redis engine: pub/sub down past its grace", "err", err, "grace", s.e.cfg.DownGrace)
		if down := s.e.handlers.Down; down != nil {
			down(err)
		}
	}
}

// healthy ends the grace or the down state: the shard is connected
// again, or stopped.
func (s *shard) healthy() {
	s.e.healthMu.Lock()
	defer s.e.healthMu.Unlock()
	s.mu.Lock()
	if s.graceTimer != nil {
		s.graceTimer.Stop()
		s.graceTimer = nil
	}
	was := s.down
	s.down = false
	s.mu.Unlock()
	if was {
		if s.e.downShards--; s.e.downShards == 0 {
			if up := s.e.handlers.Up; up != nil {
				up()
			}
		}
	}
}

// confirmed handles Redis's answer to a SUBSCRIBE or UNSUBSCRIBE (their
// sharded forms on a Cluster). It runs on rueidis's reading goroutine.
func (s *shard) confirmed(m rueidis.PubSubSubscription) {
	ch, ok := s.e.channelOf(m.Channel)
	if !ok {
		return
	}
	s.mu.Lock()
	q := s.pending[ch]
	if len(q) == 0 {
		s.mu.Unlock()
		return
	}
	st := q[0]
	if len(q) == 1 {
		delete(s.pending, ch)
	} else {
		s.pending[ch] = q[1:]
	}
	isSub := m.Kind == "subscribe" || m.Kind == "ssubscribe"
	lost := false
	if st != nil && isSub {
		if st.confirmed {
			lost = true // subscribed again after a drop
		} else {
			st.confirmed = true
			close(st.ready)
		}
	}
	s.mu.Unlock()
	if lost {
		s.e.stats.Lost.Add(1)
		// handlers is set by Start, before any shard exists.
		if onLost := s.e.handlers.Lost; onLost != nil {
			onLost(ch)
		}
	}
}

// message decodes a publication once and hands it to the hub, if its
// channel is (still) subscribed here. It runs on rueidis's reading
// goroutine.
func (s *shard) message(m rueidis.PubSubMessage) {
	ch, ok := s.e.channelOf(m.Channel)
	if !ok {
		return
	}
	if strings.HasPrefix(m.Message, "!") {
		s.presenceMessage(ch, m.Message)
		return
	}
	p, err := decodePayload(ch, m.Message)
	if err != nil {
		s.e.log.Error("redis engine: dropping a malformed publication", "channel", ch, "err", err)
		return
	}
	s.mu.Lock()
	st := s.chans[ch]
	live := st != nil && st.confirmed && st.live.Load() &&
		(p.Epoch != st.skipEpoch || p.Offset > st.skipTo)
	s.mu.Unlock()
	if !live {
		return
	}
	if deliver := s.e.handlers.Deliver; deliver != nil {
		deliver(p)
	}
}

// decodePayload reads "epoch offset time data", as publishScript writes it.
func decodePayload(channel, payload string) (*hub.Publication, error) {
	epoch, rest, ok1 := strings.Cut(payload, " ")
	offs, rest, ok2 := strings.Cut(rest, " ")
	ms, data, ok3 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !ok3 || epoch == "" || data == "" {
		return nil, errors.New("malformed payload")
	}
	off, err := strconv.ParseUint(offs, 10, 64)
	if err != nil || off == 0 {
		return nil, errors.New("malformed offset")
	}
	t, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return nil, errors.New("malformed time")
	}
	if err := msg.CheckStored([]byte(data)); err != nil {
		return nil, err // dropped: the next offset shows the hole as a gap
	}
	return hub.NewPublication(channel, epoch, off, t, json.RawMessage(data)), nil
}
