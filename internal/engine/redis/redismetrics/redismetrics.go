// Package redismetrics exports the Redis engine's Stats as Prometheus
// collectors. It is a package of its own so that the engine does not
// depend on client_golang (and net/http with it): whoever builds the
// engine (internal/cli, internal/hubtest) builds these too and hands them
// to the server (server.Config.Collectors).
package redismetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duplexhq/duplex/internal/engine/redis"
)

// Collectors returns collectors of s, read at scrape time:
// duplex_redis_round_trip_seconds (a histogram of Publish and History
// calls), duplex_redis_pubsub_reconnects_total and
// duplex_redis_errors_total. The hub's own series (lost-delivery resyncs
// among them) are registered by the server; these are Redis's alone.
func Collectors(s *redis.Stats) []prometheus.Collector {
	return []prometheus.Collector{
		roundTrips{s: s},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "duplex_redis_pubsub_reconnects_total",
			Help: "Redis pub/sub connections lost and made again.",
		}, func() float64 { return float64(s.Reconnects.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "duplex_redis_errors_total",
			Help: "Publish and History calls that Redis failed or did not answer.",
		}, func() float64 { return float64(s.Errors.Load()) }),
	}
}

var roundTripDesc = prometheus.NewDesc("duplex_redis_round_trip_seconds",
	"Latency of the Publish and History calls to Redis (one script call each).", nil, nil)

// roundTrips exports Stats.RoundTrip as a Prometheus histogram, its
// buckets made cumulative at scrape time.
type roundTrips struct{ s *redis.Stats }

func (c roundTrips) Describe(ch chan<- *prometheus.Desc) { ch <- roundTripDesc }

func (c roundTrips) Collect(ch chan<- prometheus.Metric) {
	counts, sum := c.s.RoundTrip.Snapshot()
	buckets := make(map[float64]uint64, len(redis.LatencyBounds))
	var total uint64
	for i, n := range counts {
		total += n
		if i < len(redis.LatencyBounds) {
			buckets[redis.LatencyBounds[i].Seconds()] = total
		}
	}
	ch <- prometheus.MustNewConstHistogram(roundTripDesc, total, sum.Seconds(), buckets)
}
