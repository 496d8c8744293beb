package redis

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collectors returns Prometheus collectors for the engine's Stats, read at
// scrape time: duplex_redis_round_trip_seconds (a histogram of Publish and
// History calls), duplex_redis_pubsub_reconnects_total and
// duplex_redis_errors_total. The hub's own series (lost-delivery resyncs
// among them) are registered by the server; these are Redis's alone.
func (e *Engine) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		statsCollector{e: e},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "duplex_redis_pubsub_reconnects_total",
			Help: "Redis pub/sub connections lost and made again.",
		}, func() float64 { return float64(e.stats.Reconnects.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "duplex_redis_errors_total",
			Help: "Publish and History calls that Redis failed or did not answer.",
		}, func() float64 { return float64(e.stats.Errors.Load()) }),
	}
}

var roundTripDesc = prometheus.NewDesc("duplex_redis_round_trip_seconds",
	"Latency of the Publish and History calls to Redis (one script call each).", nil, nil)

// statsCollector exports Stats.RoundTrip as a Prometheus histogram, its
// buckets made cumulative at scrape time.
type statsCollector struct{ e *Engine }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- roundTripDesc }

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	counts, sum := c.e.stats.RoundTrip.Snapshot()
	buckets := make(map[float64]uint64, len(LatencyBounds))
	var total uint64
	for i, n := range counts {
		total += n
		if i < len(LatencyBounds) {
			buckets[LatencyBounds[i].Seconds()] = total
		}
	}
	ch <- prometheus.MustNewConstHistogram(roundTripDesc, total, sum.Seconds(), buckets)
}
