package redis

import (
	"sync/atomic"
	"time"
)

// Stats are the engine's metrics, for the caller to export. Every field is
// safe to read at any time.
type Stats struct {
	// Reconnects counts pub/sub connections lost and made again.
	Reconnects atomic.Uint64
	// Lost counts "publications of a channel may have been missed"
	// signals given to the hub.
	Lost atomic.Uint64
	// Errors counts Publish and History calls Redis failed.
	Errors atomic.Uint64
	// RoundTrip is the latency of Publish and History calls to Redis.
	RoundTrip Histogram
	// PresenceRefreshes counts presence refresh batches, each one round
	// trip to Redis (a Cluster: one per node) whatever the members.
	PresenceRefreshes atomic.Uint64

	// health is what the latest round trip said of Redis; Healthy reads
	// it (see health.go).
	health health
}

func (s *Stats) observe(d time.Duration, err error) {
	if err != nil {
		s.Errors.Add(1)
	}
	s.RoundTrip.Observe(d)
	s.health.record(err)
}

// LatencyBounds are the upper bounds of Histogram's buckets: 50µs doubling
// to about 1.6s; a last bucket takes everything above.
var LatencyBounds = func() []time.Duration {
	b := make([]time.Duration, 16)
	for i := range b {
		b[i] = 50 * time.Microsecond << i
	}
	return b
}()

// Histogram counts durations into LatencyBounds buckets without locks.
type Histogram struct {
	counts [17]atomic.Uint64 // len(LatencyBounds)+1
	sum    atomic.Int64      // nanoseconds
}

// Observe adds one duration.
func (h *Histogram) Observe(d time.Duration) {
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// Snapshot returns the count of each bucket (not cumulative; the last is
// the overflow) and the sum of every observation.
func (h *Histogram) Snapshot() (counts []uint64, sum time.Duration) {
	counts = make([]uint64, len(h.counts))
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
	}
	return counts, time.Duration(h.sum.Load())
}
