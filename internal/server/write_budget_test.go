package server

import (
	"testing"
	"testing/synctest"
	"time"
)

// Under budget nothing is held: a lone write, then a second write to the
// same connection in the same window, go out at once.
func TestWriteBudgetLoneWriteNotHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newWriteBudget(1000, 30*time.Millisecond)
		for range 100 { // 100 writes a second: a tenth of the budget
			w := b.wrote()
			if d := b.hold(w); d != 0 {
				t.Fatalf("held %v under budget", d)
			}
			if b.holding() {
				t.Fatal("holding under budget")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// Over budget, a connection written to in this window waits for its end,
// and the window is what the budget takes to pay for the last one's
// writes, capped at the longest hold; one not written to in this window
// is not held. Holding stops when the writes use less than half the
// budget.
func TestWriteBudgetHoldsWhenOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newWriteBudget(1000, 100*time.Millisecond)
		// The first window, 100ms, pays for 100 writes: 5 are not held.
		var w uint64
		for range 5 {
			w = b.wrote()
			if d := b.hold(w); d != 0 {
				t.Fatalf("held %v within the first window's allowance", d)
			}
		}
		for range 195 {
			w = b.wrote()
		}
		if d := b.hold(w); d != 100*time.Millisecond {
			t.Fatalf("hold %v past the allowance, want the window's 100ms", d)
		}
		time.Sleep(100 * time.Millisecond)
		// The next window: 200 writes cost 200ms, capped at 100ms.
		w = b.wrote()
		if !b.holding() {
			t.Fatal("not holding after an over-budget window")
		}
		if d := b.hold(w); d != 100*time.Millisecond {
			t.Fatalf("hold %v, want the 100ms cap", d)
		}
		if d := b.hold(w - 1); d != 0 {
			t.Fatalf("a connection not written to in this window held %v", d)
		}
		// 60 writes of the 100 paid for: still over, for 60ms.
		for range 59 {
			b.wrote()
		}
		time.Sleep(100 * time.Millisecond)
		w = b.wrote()
		if d := b.hold(w); d != 60*time.Millisecond {
			t.Fatalf("hold %v after a window at 60%% of budget, want 60ms", d)
		}
		// 20 of the 60 paid for: no longer over.
		for range 19 {
			b.wrote()
		}
		time.Sleep(60 * time.Millisecond)
		w = b.wrote()
		if d := b.hold(w); d != 0 || b.holding() {
			t.Fatalf("held %v (holding %v) after a window at a third of budget", d, b.holding())
		}
		// After a quiet spell nothing is held either.
		time.Sleep(time.Second)
		w = b.wrote()
		if d := b.hold(w); d != 0 || b.holding() {
			t.Fatalf("held %v (holding %v) after a quiet second", d, b.holding())
		}
	})
}

// Within one window, writes past what its length pays for put the window
// over budget at once: a connection written to again waits for its end.
func TestWriteBudgetOverWithinWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newWriteBudget(1000, 30*time.Millisecond) // pays for 30
		var w uint64
		for range 30 {
			w = b.wrote()
		}
		if d := b.hold(w); d != 0 {
			t.Fatalf("held %v within the allowance", d)
		}
		w = b.wrote()
		if d := b.hold(w); d != 30*time.Millisecond {
			t.Fatalf("hold %v past the allowance, want the window's 30ms", d)
		}
	})
}

// A budget turned off holds nothing.
func TestWriteBudgetOff(t *testing.T) {
	for _, b := range []*writeBudget{newWriteBudget(-1, time.Second), newWriteBudget(1, -1)} {
		if b != nil {
			t.Fatalf("budget %+v, want none", b)
		}
		if w := b.wrote(); b.hold(w) != 0 || b.holding() {
			t.Fatal("a nil budget holds")
		}
	}
}
