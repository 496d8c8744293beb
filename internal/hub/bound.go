package hub

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// The hub-wide bound on queued bytes (Config.MaxQueuedBytes).
//
// Each session bounds its own queue (QueueMessages, QueueBytes), but a
// crowd of readers that take nothing, each under its own bound, can still
// hold more than the process has: 2,000 SSE clients that never read took a
// hub from 110 MB to 726 MB before their write timeouts cut them. So the
// hub also keeps one total, Hub.queued, of what every open session holds,
// and cuts the largest holders when it passes the bound.
//
// The fast path is one atomic add per publication, whatever the number of
// subscribers: deliver sums what its pushes queued and adds it once, then
// compares. Only when the total is over the bound does a slow path run:
// one goroutine at a time takes a snapshot of every session's holding
// (Hub.mu read-locked, then each Session.mu in turn, never two at once:
// the package's lock order holds), sorts it, and closes sessions from the
// largest down until the total is back under the bound. Each scan cuts at
// least one session, so the scans cost O(sessions) per cut connection, and
// a cut connection costs its reconnect far more than that.
//
// The total may pass the bound by what one call queues before it looks:
// one publication's fan-out, one reply. Replays do not count (see
// Session.heldLocked): like the per-session bounds, the bound is on live
// traffic, and history bounds replays.

// queuedGrew adds n bytes just queued to the total, and trims when the
// total is over the bound. The caller holds no hub, channel or session
// lock.
func (h *Hub) queuedGrew(n int64) {
	if n == 0 {
		return
	}
	if total := h.queued.Add(n); h.cfg.MaxQueuedBytes > 0 && total > h.cfg.MaxQueuedBytes {
		h.trim()
	}
}

// trim cuts sessions until the total is within the bound, unless another
// goroutine is at it. It looks again after letting go, so an add that came
// while another trimmed and found it busy is not left over the bound.
func (h *Hub) trim() {
	if last := h.idleScan.Load(); last != 0 && time.Since(time.Unix(0, last)) < idleScanPause {
		return
	}
	for h.queued.Load() > h.cfg.MaxQueuedBytes && h.trimming.CompareAndSwap(false, true) {
		cut := h.cutLargest()
		h.trimming.Store(false)
		if cut == 0 {
			// Nobody holds MinCutBytes: a burst in flight, not a backlog.
			h.idleScan.Store(time.Now().UnixNano())
			return
		}
	}
}

// idleScanPause is how long trims rest after one that found nothing to
// cut.
const idleScanPause = 10 * time.Millisecond

// holding is one session's share of the total, as the snapshot saw it.
type holding struct {
	s    *Session
	held int
}

// cutLargest closes the sessions holding the most, largest first, until
// the total is within the bound, and returns how many it closed.
func (h *Hub) cutLargest() int {
	h.mu.RLock()
	all := make([]holding, 0, len(h.sessions))
	for s := range h.sessions {
		all = append(all, holding{s: s})
	}
	h.mu.RUnlock()
	for i := range all {
		all[i].held = all[i].s.heldBytes()
	}
	slices.SortFunc(all, func(a, b holding) int { return cmp.Compare(b.held, a.held) })
	limit := h.cfg.MaxQueuedBytes
	cut := 0
	for _, c := range all {
		total := h.queued.Load()
		if total <= limit || c.held < h.cfg.MinCutBytes {
			break
		}
		reason := fmt.Sprintf("hub outbound memory over its bound (%d bytes queued, bound %d); this session held %d", total, limit, c.held)
		if c.s.cutSlow(reason) {
			cut++
		}
	}
	return cut
}

// heldBytes returns what s holds in the total.
func (s *Session) heldBytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0
	}
	return s.heldLocked()
}

// cutSlow closes s as a slow consumer, counted as one, unless it is closed
// already. It reports whether it closed s.
func (s *Session) cutSlow(reason string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.h.slowCuts.Add(1)
	s.closeLocked(msg.CloseSlow, reason)
	return true
}
