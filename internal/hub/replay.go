package hub

import (
	"context"

	"github.com/duplexhq/duplex/msg"
)

// Replay in pages, and the catch-up from history after a hole.
//
// A channel of a session is "recovering" while its messages come from
// history rather than live delivery: from Subscribe until the replay has
// reached the channel's latest offset, and again from a lost delivery
// (Handlers.Lost) or a live hole until history has filled it. Live
// publications wait in subState.pending meanwhile, at most Hub.pageLen:
// when more come, the older ones are dropped, since history holds them.
//
// History is read one page at a time per session, never all of it: a page
// is at most Hub.pageLen publications and at most half of what the
// session's queue has room for, and the next page is read only once the
// owner has taken the last one (TryNext). So a session resuming 128
// channels holds one page, not 128 channels' history, and its replay alone
// never fills its queue: a reader cut as slow is not cut again by its own
// replay. The reads run on the session's pager goroutine (catchUp), at
// most one per session, owned by the hub (goBackground), each under
// Config.EngineTimeout; Subscribe reads the first page itself.
//
// When a page has reached the latest offset the history read saw, the
// channel joins pending (joinLocked) if pending starts at or before the
// next offset; if it starts later (older entries were dropped, or the
// engine lost some), the pager reads again. A gap is announced only from
// history: the cursor's epoch is gone, or the oldest retained offset is
// past the session's position.

// pageLimitLocked is how many publications the next page may hold: zero
// while a page waits in the queue, else at most Hub.pageLen and half of
// the queue's room in count and in bytes (counting each publication at
// MaxMessage), and at least one when the queue is empty.
func (s *Session) pageLimitLocked() int {
	if s.replayN > 0 {
		return 0
	}
	cfg := s.h.cfg
	n := min(s.h.pageLen, (cfg.QueueMessages-len(s.queue))/2, (cfg.QueueBytes-s.queueBytes)/2/(cfg.MaxMessage+pubOverhead))
	if n < 1 && len(s.queue) == 0 {
		n = 1
	}
	return max(n, 0)
}

// pubOverhead is what a publication's encoding adds to its data, at most,
// beside the channel name: see NewPublication.
const pubOverhead = 128 + 128

// wantReadLocked queues channel for another page of history and starts
// the pager if it may run.
func (s *Session) wantReadLocked(channel string, st *subState) {
	if !st.queuedRead {
		st.queuedRead = true
		s.readQ = append(s.readQ, channel)
	}
	s.kickLocked()
}

// kickLocked starts the pager unless it runs, has nothing to read, or must
// wait for the owner to take the queue (TryNext kicks it then).
func (s *Session) kickLocked() {
	if s.paging || s.closed || len(s.readQ) == 0 || s.pageLimitLocked() == 0 {
		return
	}
	if s.h.goBackground(s.catchUp) {
		s.paging = true
	}
}

// catchUp is the session's pager: it reads pages of history for the
// channels in readQ, in order, until none needs one, the queue holds an
// untaken page, or the session closes.
func (s *Session) catchUp() {
	h := s.h
	for {
		s.mu.Lock()
		limit := s.pageLimitLocked()
		if s.closed || len(s.readQ) == 0 || limit == 0 {
			s.paging = false
			s.mu.Unlock()
			return
		}
		channel := s.readQ[0]
		s.readQ[0] = ""
		s.readQ = s.readQ[1:]
		if len(s.readQ) == 0 {
			s.readQ = nil
		}
		st := s.subs[channel]
		if st == nil || !st.queuedRead || !st.started || !st.recovering {
			if st != nil {
				st.queuedRead = false
			}
			s.mu.Unlock()
			continue
		}
		st.queuedRead = false
		st.stale = false // this read is made after any loss seen so far
		after := st.last
		s.mu.Unlock()

		h.replayReads.Add(1)
		ctx, cancel := h.engineContext(context.Background())
		state, page, err := h.engine.History(ctx, channel, HistoryQuery{After: after, Limit: limit})
		cancel()

		var queued uint64
		var grew int
		s.mu.Lock()
		switch {
		case s.closed || s.subs[channel] != st:
		case err != nil:
			// The session cannot go on without a hole: the client
			// resumes from its cursor once the engine answers again.
			s.closeLocked(msg.CloseInternal, "engine: "+engineError(err).Error())
		case st.last != after:
			s.wantReadLocked(channel, st)
		default:
			queued, grew = s.applyPageLocked(channel, st, state, page, 0, 0)
		}
		s.mu.Unlock()
		h.delivered.Add(queued)
		h.queuedGrew(int64(grew))
	}
}

// applyPageLocked queues a page of history read after st.last, with the
// gap that state calls for, then joins live delivery if the page reached
// the latest offset, or asks for the next page. It returns queued and
// grew with what it queued added.
func (s *Session) applyPageLocked(channel string, st *subState, state StreamState, page []*Publication, queued uint64, grew int) (uint64, int) {
	st.started = true
	var gap *msg.Gap
	switch {
	case st.epoch != "" && state.Epoch == "" && len(st.pending) == 0:
		// The store holds no epoch at all (Redis lost everything and
		// nothing was published since): no gap could name one. Keep the
		// old position; the new epoch's first publication does not follow
		// it, so history is read again then and that gap names the epoch.
		// Nothing can be delivered meanwhile, so nothing is held back.
		// (With publications pending the store lost those too; reading
		// again could loop, so the cases below take it as they stand.)
		return s.joinLocked(channel, st, queued, grew)
	case st.epoch != "" && st.epoch != state.Epoch:
		// Another epoch: the position means nothing here. Replay what
		// is retained; a gap unless nothing can have been lost (a reader
		// at offset 0 of a channel that still has offset 1).
		if !(st.last == 0 && state.Oldest == 1) {
			gap = &msg.Gap{Type: msg.TypeGap, Channel: channel, Epoch: state.Epoch, Next: state.Oldest}
		}
		if st.last >= state.Oldest {
			page = nil // read after the old position: not all of this epoch
		}
		st.last = state.Oldest - 1
	case st.last > state.Latest:
		// Ahead of the channel: what the reader saw is not this history.
		// Say so, and go on from the next offset.
		gap = &msg.Gap{Type: msg.TypeGap, Channel: channel, Epoch: state.Epoch, Next: state.Latest + 1}
		st.last = state.Latest
	case st.last+1 < state.Oldest:
		// Trimmed: the page, read after st.last, starts at Oldest.
		gap = &msg.Gap{Type: msg.TypeGap, Channel: channel, Epoch: state.Epoch, Next: state.Oldest}
		st.last = state.Oldest - 1
	}
	st.epoch = state.Epoch
	if gap != nil {
		_, n := s.enqueueLocked(Item{Gap: gap})
		grew += n
	}
	s.replaying = true
	for _, p := range page {
		ok, n := s.pushLocked(st, p)
		if ok {
			queued++
		}
		grew += n
	}
	s.replaying = false
	if s.closed {
		return queued, grew
	}
	if st.last < state.Latest {
		s.wantReadLocked(channel, st)
		return queued, grew
	}
	return s.joinLocked(channel, st, queued, grew)
}

// joinLocked ends the channel's recovery once history has reached the
// latest offset it knew: pending is queued where it meets what the
// session has. If it does not meet (older entries dropped, or the engine
// lost deliveries since the read began: stale), history is read again.
func (s *Session) joinLocked(channel string, st *subState, queued uint64, grew int) (uint64, int) {
	st.started = true
	if st.stale {
		s.wantReadLocked(channel, st)
		return queued, grew
	}
	pending := st.pending
	st.pending = nil
	for i, p := range pending {
		if st.epoch == "" {
			st.epoch = p.Epoch
		}
		if p.Epoch == st.epoch && p.Offset <= st.last {
			continue
		}
		if p.Epoch != st.epoch || p.Offset > st.last+1 {
			st.pending = append([]*Publication(nil), pending[i:]...)
			s.wantReadLocked(channel, st)
			return queued, grew
		}
		ok, n := s.pushLocked(st, p)
		if ok {
			queued++
		}
		grew += n
	}
	st.recovering = false
	return queued, grew
}

// resync is Handlers.Lost for one session: live delivery of channel may
// have missed publications, so the channel recovers from history, from
// the last offset the session queued.
func (s *Session) resync(channel string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.subs[channel]
	if st == nil || s.closed {
		return
	}
	if st.recovering {
		// What pending holds may have a hole before it: only a read
		// made from now on can join history to live.
		clear(st.pending)
		st.pending = nil
		st.stale = true
	}
	st.recovering = true
	if st.started {
		s.wantReadLocked(channel, st)
	}
}
