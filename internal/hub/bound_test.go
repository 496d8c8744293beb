package hub_test

import (
	"context"
	"testing"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// TestQueuedBytesCountsUntilWritten: what a session holds counts in the
// hub's total from the push until its owner has written it, not only
// while it waits in the queue: a transport stuck in a write holds it.
func TestQueuedBytesCountsUntilWritten(t *testing.T) {
	h, _ := newHub(t, hub.Config{}, memory.Config{})
	ctx := context.Background()
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(ctx, "c", hub.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	want := func(step string, n int64) {
		t.Helper()
		if got := h.Stats().QueuedBytes; got != n {
			t.Fatalf("%s: QueuedBytes = %d, want %d", step, got, n)
		}
	}
	want("idle", 0)
	p1, _ := h.Publish(ctx, "c", []byte(`"one"`))
	p2, _ := h.Publish(ctx, "c", []byte(`"two"`))
	size := func(ps ...*hub.Publication) (n int64) {
		for _, p := range ps {
			n += int64(len(p.JSON))
		}
		return n
	}
	want("queued", size(p1, p2))
	if items, err := s.TryNext(); err != nil || len(items) != 2 {
		t.Fatalf("TryNext = %d items, %v", len(items), err)
	}
	want("taken, not written", size(p1, p2))
	s.Written()
	want("written", 0)
	p3, _ := h.Publish(ctx, "c", []byte(`"three"`))
	s.TryNext()
	p4, _ := h.Publish(ctx, "c", []byte(`"four"`))
	want("one in flight, one queued", size(p3, p4))
	s.TryNext() // taking again means the last batch is done
	want("next batch taken", size(p4))
	h.Publish(ctx, "c", []byte(`"five"`))
	s.Close(msg.CloseNormal, "")
	want("closed", 0)
}

// TestMaxQueuedBytesCutsLargestFirst: past the hub-wide bound the sessions
// holding the most are cut first, as slow consumers, while the total stays
// within the bound after every publication and a reader that keeps up is
// never cut. Three laggards hold three, two and one publications per round
// (one of them stuck "in a write": it took a batch and never finished it).
func TestMaxQueuedBytesCutsLargestFirst(t *testing.T) {
	data := []byte(`"0123456789012345678901234567890123456789"`)
	// Every publication of this test encodes to the same size: channels of
	// one letter, offsets of two digits (9 published before the sessions
	// start, at most 90 rounds). The epoch is one engine's, of fixed length.
	const rounds = 20
	probeHub, _ := newHub(t, hub.Config{}, memory.Config{})
	var probe *hub.Publication
	for range 10 {
		var err error
		if probe, err = probeHub.Publish(context.Background(), "a", data); err != nil {
			t.Fatal(err)
		}
	}
	size := int64(len(probe.JSON))
	// The three laggards gain 6 publications a round: the bound lets
	// round 2 (12 in all) pass and round 3 (18) go over.
	bound := 14 * size
	h, _ := newHub(t, hub.Config{MaxQueuedBytes: bound, QueueBytes: 1 << 20, MinCutBytes: 1}, memory.Config{})
	ctx := context.Background()
	for _, c := range []string{"a", "b", "c"} {
		for range 9 {
			if _, err := h.Publish(ctx, c, data); err != nil {
				t.Fatal(err)
			}
		}
	}
	sub := func(channels ...string) *hub.Session {
		t.Helper()
		s, err := h.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Release)
		for _, c := range channels {
			if _, err := s.Subscribe(ctx, c, hub.SubscribeOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	three, two, one := sub("a", "b", "c"), sub("b", "c"), sub("c")
	reader := sub("a", "b", "c")
	names := map[*hub.Session]string{three: "three", two: "two", one: "one", reader: "reader"}
	var order []string
	closed := map[*hub.Session]bool{}
	for round := 1; round <= rounds; round++ {
		for _, c := range []string{"a", "b", "c"} {
			p, err := h.Publish(ctx, c, data)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(p.JSON)) != size {
				t.Fatalf("publication of %d bytes, want %d: the test's arithmetic is off", len(p.JSON), size)
			}
			if got := h.Stats().QueuedBytes; got > bound {
				t.Fatalf("round %d, channel %s: %d bytes queued, over the bound %d", round, c, got, bound)
			}
			if items, err := reader.TryNext(); err != nil || len(items) != 1 {
				t.Fatalf("round %d: reader took %d items, %v; want 1", round, len(items), err)
			}
			reader.Written()
			for s, name := range names {
				if closed[s] || s.Err() == nil {
					continue
				}
				closed[s] = true
				order = append(order, name)
				if code := msg.CloseCodeOf(s.Err()); code != msg.CloseSlow {
					t.Fatalf("%s closed with %v, want CloseSlow", name, s.Err())
				}
			}
		}
		if round == 1 {
			// three takes its first round and never finishes writing it.
			if items, err := three.TryNext(); err != nil || len(items) != 3 {
				t.Fatalf("three took %d items, %v", len(items), err)
			}
		}
	}
	want := []string{"three", "two", "one"}
	if len(order) != len(want) || order[0] != want[0] || order[1] != want[1] || order[2] != want[2] {
		t.Fatalf("sessions cut in order %v, want %v", order, want)
	}
	if st := h.Stats(); st.SlowCuts != 3 {
		t.Fatalf("SlowCuts = %d, want 3", st.SlowCuts)
	}
}

// TestMaxQueuedBytesNegativeMeansNoBound: with a negative bound nothing is
// cut for the hub's total, only for a session's own QueueBytes.
func TestMaxQueuedBytesNegativeMeansNoBound(t *testing.T) {
	h, _ := newHub(t, hub.Config{MaxQueuedBytes: -1}, memory.Config{})
	ctx := context.Background()
	s, _ := h.NewSession()
	defer s.Release()
	s.Subscribe(ctx, "c", hub.SubscribeOptions{})
	publishN(t, h, "c", 1, 1000)
	if s.Err() != nil || h.Stats().SlowCuts != 0 {
		t.Fatalf("session closed (%v), %d slow cuts, with no bound", s.Err(), h.Stats().SlowCuts)
	}
	if h.Config().MaxQueuedBytes != -1 {
		t.Fatalf("MaxQueuedBytes = %d, want -1 kept", h.Config().MaxQueuedBytes)
	}
	h2, _ := newHub(t, hub.Config{}, memory.Config{})
	if got := h2.Config().MaxQueuedBytes; got != hub.DefaultMaxQueuedBytes {
		t.Fatalf("zero MaxQueuedBytes = %d, want %d", got, hub.DefaultMaxQueuedBytes)
	}
}

// TestMaxQueuedBytesSparesSmallHolders: a fan-out that takes the total
// over the bound while no session holds MinCutBytes — a burst to many
// readers, each holding one message — cuts nobody; once one session's
// backlog reaches MinCutBytes it is cut, and only it.
func TestMaxQueuedBytesSparesSmallHolders(t *testing.T) {
	const floor = 4096
	h, _ := newHub(t, hub.Config{MaxQueuedBytes: 2000, MinCutBytes: floor}, memory.Config{})
	ctx := context.Background()
	var readers []*hub.Session
	for range 20 {
		s, _ := h.NewSession()
		defer s.Release()
		if _, err := s.Subscribe(ctx, "c", hub.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
		readers = append(readers, s)
	}
	big := []byte(`"0123456789012345678901234567890123456789012345678901234567890123456789"`)
	h.Publish(ctx, "c", big) // 20 × ~150 bytes: over 2000 in all
	if h.Stats().QueuedBytes <= 2000 || h.Stats().SlowCuts != 0 {
		t.Fatalf("burst: queued %d, %d cuts; want over the bound and none cut", h.Stats().QueuedBytes, h.Stats().SlowCuts)
	}
	for _, s := range readers[1:] { // all but the first keep up
		s.TryNext()
		s.Written()
	}
	for h.Stats().SlowCuts == 0 {
		h.Publish(ctx, "c", big)
		for _, s := range readers[1:] {
			s.TryNext()
			s.Written()
		}
	}
	if readers[0].Err() == nil || msg.CloseCodeOf(readers[0].Err()) != msg.CloseSlow {
		t.Fatalf("the laggard: %v, want closed as slow", readers[0].Err())
	}
	for i, s := range readers[1:] {
		if s.Err() != nil {
			t.Fatalf("reader %d that kept up was cut: %v", i+1, s.Err())
		}
	}
	if n := h.Stats().SlowCuts; n != 1 {
		t.Fatalf("%d cuts, want 1", n)
	}
}
