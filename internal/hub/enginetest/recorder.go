package enginetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// waitLimit is how long the suite waits for something an engine owes it.
// Only a broken engine reaches it; it is not a speed requirement.
const waitLimit = 20 * time.Second

// recorder is the Handlers of one engine instance: it keeps what the engine
// delivered and signalled, and lets a test wait for a condition on it.
type recorder struct {
	mu sync.Mutex // guards everything below
	// got holds each channel's delivered offsets, in delivery order.
	got  map[string][]uint64
	pubs map[string][]*hub.Publication
	lost map[string]int
	errs []string
	inCh map[string]bool // a Deliver for the channel is running
	// seq holds each channel's deliveries and presence events in the
	// order they came: "p<offset>", "join:<client>", "leave:<client>".
	seq   map[string][]string
	wake  chan struct{} // closed and replaced on every change
	total int
}

func newRecorder() *recorder {
	return &recorder{got: map[string][]uint64{}, pubs: map[string][]*hub.Publication{},
		lost: map[string]int{}, inCh: map[string]bool{}, wake: make(chan struct{}), seq: map[string][]string{}}
}

func (r *recorder) handlers() hub.Handlers {
	return hub.Handlers{Deliver: r.deliver, Lost: r.signalLost, Presence: r.presence}
}

func (r *recorder) deliver(p *hub.Publication) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inCh[p.Channel] {
		r.errs = append(r.errs, "Deliver called concurrently for channel "+p.Channel)
	}
	if !msg.ValidEpoch(p.Epoch) {
		r.errs = append(r.errs, fmt.Sprintf("delivered epoch %q is not valid", p.Epoch))
	}
	r.got[p.Channel] = append(r.got[p.Channel], p.Offset)
	r.seq[p.Channel] = append(r.seq[p.Channel], fmt.Sprintf("p%d", p.Offset))
	r.pubs[p.Channel] = append(r.pubs[p.Channel], p)
	r.total++
	r.changedLocked()
}

func (r *recorder) signalLost(channel string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost[channel]++
	r.changedLocked()
}

func (r *recorder) changedLocked() {
	close(r.wake)
	r.wake = make(chan struct{})
}

// wait blocks until cond, called under the recorder's lock, holds; it
// fails t after waitLimit.
func (r *recorder) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond()
		wake := r.wake
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-wake:
		case <-deadline.C:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("waited %v for %s; delivered %v, lost %v", waitLimit, what, r.got, r.lost)
		}
	}
}

// waitOffset waits until channel's offset off was delivered.
func (r *recorder) waitOffset(t *testing.T, channel string, off uint64) {
	t.Helper()
	r.wait(t, fmt.Sprintf("offset %d of %s", off, channel), func() bool {
		return slices.Contains(r.got[channel], off)
	})
}

func (r *recorder) offsets(channel string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[channel])
}

func (r *recorder) lostCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.lost {
		n += c
	}
	return n
}

// check fails t on any contract breach the recorder saw: a concurrent
// Deliver for one channel, an invalid epoch, offsets out of order or twice
// within one epoch.
func (r *recorder) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		t.Error(e)
	}
	for ch, pubs := range r.pubs {
		for i := 1; i < len(pubs); i++ {
			if pubs[i].Epoch == pubs[i-1].Epoch && pubs[i].Offset <= pubs[i-1].Offset {
				t.Errorf("channel %s: offset %d delivered after %d", ch, pubs[i].Offset, pubs[i-1].Offset)
			}
		}
	}
}

// instance is one started engine and what it delivered.
type instance struct {
	hub.Engine
	rec *recorder
}

// start starts e, closing it and checking its recorder when t ends.
func start(t *testing.T, e hub.Engine) *instance {
	t.Helper()
	rec := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := e.Start(ctx, rec.handlers()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		rec.check(t)
	})
	return &instance{Engine: e, rec: rec}
}

func (r *recorder) presence(ev *hub.PresenceEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := string(hub.NewPresenceEvent(ev.Type, ev.Channel, msg.Member{Client: ev.Client, User: ev.User, Info: ev.Info}).JSON)
	if string(ev.JSON) != want {
		r.errs = append(r.errs, fmt.Sprintf("presence event JSON %s, want %s", ev.JSON, want))
	}
	r.seq[ev.Channel] = append(r.seq[ev.Channel], ev.Type+":"+ev.Client)
	r.changedLocked()
}

// waitSeq waits until channel's sequence holds item.
func (r *recorder) waitSeq(t *testing.T, channel, item string) {
	t.Helper()
	r.wait(t, item+" on "+channel, func() bool { return slices.Contains(r.seq[channel], item) })
}

func (r *recorder) sequence(channel string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seq[channel])
}
