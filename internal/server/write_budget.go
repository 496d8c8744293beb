package server

import (
	"sync"
	"sync/atomic"
	"time"
)

// writeBudget paces the hub's writes to its WebSocket, SSE and NDJSON
// connections, so that batching comes from load rather than from a fixed
// delay. Each write(2) to a loopback or LAN socket costs more hub CPU than
// framing the message it carries (docs/benchmarks.md, "Write batching"), so
// under a heavy fan-out the hub writes each connection once per window and
// lets what arrives meanwhile share that write; when the hub is not busy,
// nothing waits.
//
// Time is cut into windows. A window's length is what the budget (rate,
// writes per second hub-wide) takes to pay for the writes of the window
// before it — so with every connection written once per window, each gets
// about rate/connections writes per second — never more than max and never
// less than writeWindowMin. A connection written to in the current window
// that has something new is held until the window ends only while the hub
// is over budget: the window before was (its writes exceeded what its
// length paid for; once over, while they use half of it), or this one's
// writes already exceed what its length pays for. A lone message, or a connection the hub has not written
// to in this window, is never held. Replies and close frames are never held
// (wsWriters.schedule).
//
// newWriteBudget returns nil when rate or max is not positive (no budget);
// a nil *writeBudget holds nothing.
type writeBudget struct {
	rate float64       // writes per second; not positive: no budget
	max  time.Duration // the longest window; not positive: no budget

	n       atomic.Int64  // writes in the current window
	window  atomic.Uint64 // counts windows; the first is 1
	endNano atomic.Int64  // the current window's end (UnixNano)
	allow   atomic.Int64  // the writes the current window's length pays for
	over    atomic.Bool   // the window before was over budget

	// mu serialises roll and guards length. Lock order: wsWriters.mu,
	// then mu (schedule asks hold under wsWriters.mu); nothing is locked
	// under mu.
	mu     sync.Mutex
	length time.Duration // the current window's planned length
}

// writeWindowMin is the shortest window: the hub's write rate is measured
// over at least this long before a window is judged over budget.
const writeWindowMin = time.Millisecond

func newWriteBudget(rate float64, max time.Duration) *writeBudget {
	if rate <= 0 || max <= 0 {
		return nil
	}
	b := &writeBudget{rate: rate, max: max}
	b.window.Store(1)
	// The first window is the longest: with no rate measured yet, each
	// connection's first write goes out at once and its next only if the
	// writes so far are within what the window pays for.
	b.start(time.Now(), max)
	return b
}

func (b *writeBudget) start(now time.Time, length time.Duration) {
	b.length = length
	b.allow.Store(int64(b.rate * length.Seconds()))
	b.endNano.Store(now.Add(length).UnixNano())
}

// wrote counts one write and returns the window it was made in, for hold.
func (b *writeBudget) wrote() uint64 {
	if b == nil {
		return 0
	}
	if now := time.Now(); now.UnixNano() >= b.endNano.Load() {
		b.roll(now) // this write belongs to the next window
	}
	b.n.Add(1)
	return b.window.Load()
}

// hold returns how long a connection last written to in window last, with
// something new to write, should wait: until the current window's end if
// that is the window it was written in and the hub is over budget, else 0.
func (b *writeBudget) hold(last uint64) time.Duration {
	if b == nil || last != b.window.Load() {
		return 0
	}
	now := time.Now()
	rest := time.Duration(b.endNano.Load() - now.UnixNano())
	if rest <= 0 {
		b.roll(now)
		return 0 // a new window: last is not it
	}
	if !b.over.Load() && b.n.Load() <= b.allow.Load() {
		return 0
	}
	return rest
}

// holding reports whether connections written to in this window may be
// held (so writers hand them back to the lists rather than writing again).
func (b *writeBudget) holding() bool {
	return b != nil && (b.over.Load() || b.n.Load() > b.allow.Load())
}

// roll ends the current window, if it is over, and starts the next, whose
// length is what the budget takes to pay for the writes just ended (scaled
// to the window's planned length, so a window left open through a quiet
// spell does not count as busy).
func (b *writeBudget) roll(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	end := b.endNano.Load()
	if now.UnixNano() < end {
		return // another roll came first
	}
	n := float64(b.n.Swap(0))
	if late := now.UnixNano() - end; late > 0 {
		planned := float64(b.length)
		n *= planned / (planned + float64(late))
	}
	// Over when the writes came faster than the budget pays for; once
	// over, a held window's writes (one a busy connection) stay over while
	// they use half the budget, or the hub would flip between holding and
	// writing everything, every other window.
	allow := float64(b.allow.Load())
	b.over.Store(n > allow || (b.over.Load() && n >= allow/2))
	next := time.Duration(n / b.rate * 1e9)
	b.start(now, min(max(next, writeWindowMin), b.max))
	b.window.Add(1)
}
