package hub_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
)

// fanoutWindow is how many publications the benchmark publishes before it
// waits for every session to have taken all of them. It keeps each queue
// far below the hub's default bound (4096), so no session is cut as slow,
// while still letting a session's drainer take many items at once, as a
// transport's writer does with Session.Next.
const fanoutWindow = 128

// BenchmarkFanout publishes to one channel that n sessions subscribe to,
// each drained by its own goroutine with Session.Next, the way a transport's
// writer drains it. One op is one publication, delivered to all n sessions:
// ns/op is the cost of publishing plus fanning out (the drainers run on the
// same cores and are included), allocs/op the allocations of the whole
// process per publication, which must not grow with n.
//
// Run: go test -run '^$' -bench BenchmarkFanout -benchmem ./internal/hub/
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000, 10000} {
		b.Run("subs="+strconv.Itoa(n), func(b *testing.B) { benchFanout(b, n) })
	}
}

func benchFanout(b *testing.B, n int) {
	ctx := context.Background()
	h, err := hub.New(ctx, hub.Config{Engine: memory.New(memory.Config{})})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Shutdown(ctx)

	const channel = "bench"
	data := []byte(`{"text":"hello, subscribers","n":42}`)
	var (
		windowEnd atomic.Uint64 // offset of the last publication of the current window
		reached   sync.WaitGroup
		received  atomic.Uint64
		drainers  sync.WaitGroup
	)
	dctx, stop := context.WithCancel(ctx)
	defer stop()
	sessions := make([]*hub.Session, n)
	for i := range sessions {
		s, err := h.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Subscribe(ctx, channel, hub.SubscribeOptions{}); err != nil {
			b.Fatal(err)
		}
		sessions[i] = s
	}
	// Warm up as a long-lived session is: a session keeps the two slices
	// its queue alternates between (see Session.TryNext), and they grow to
	// the largest batch it has seen. Two full windows, each taken in one
	// batch, grow both to the largest batch this benchmark can produce, so
	// the timed loop measures the steady state, not that one-off growth
	// (at most about 2·log2(batch) allocations per session in its life).
	var offset uint64
	for range 2 {
		for range fanoutWindow {
			p, err := h.Publish(ctx, channel, data)
			if err != nil {
				b.Fatal(err)
			}
			offset = p.Offset
		}
		for _, s := range sessions {
			if items, err := s.TryNext(); err != nil || len(items) != fanoutWindow {
				b.Fatalf("warm-up: took %d items, %v; want %d", len(items), err, fanoutWindow)
			}
		}
	}
	for _, s := range sessions {
		drainers.Go(func() {
			var got, bytes uint64
			for {
				items, err := s.Next(dctx)
				if err != nil {
					received.Add(got)
					return
				}
				for _, it := range items {
					bytes += uint64(len(it.Pub.JSON)) // touch what a writer would write
				}
				got += uint64(len(items))
				if items[len(items)-1].Pub.Offset == windowEnd.Load() {
					reached.Done()
				}
			}
		})
	}

	// publish publishes count publications in windows, waiting at the end
	// of each until every session has taken all of it.
	publish := func(count int) {
		for published := 0; published < count; {
			w := min(fanoutWindow, count-published)
			reached.Add(n)
			windowEnd.Store(offset + uint64(w))
			for range w {
				p, err := h.Publish(ctx, channel, data)
				if err != nil {
					b.Fatal(err)
				}
				offset = p.Offset
			}
			published += w
			reached.Wait()
		}
	}
	// One window untimed, so every drainer has run and parked once: the
	// runtime's first allocations for a parked goroutine (its sudogs) are
	// not the hub's.
	publish(fanoutWindow)

	b.ReportAllocs()
	b.ResetTimer()
	publish(b.N)
	b.StopTimer()

	stop()
	drainers.Wait()
	for _, s := range sessions {
		s.Release()
	}
	if st := h.Stats(); st.SlowCuts != 0 {
		b.Fatalf("%d sessions were cut as slow consumers", st.SlowCuts)
	}
	if got, want := received.Load(), uint64(n)*uint64(fanoutWindow+b.N); got != want {
		b.Fatalf("sessions received %d publications, want %d", got, want)
	}
}
