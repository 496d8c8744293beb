package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler serves the hub's counters, read at scrape time, plus the
// Go runtime and process collectors, in the Prometheus text format.
func (s *Server) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "duplex_published_total", Help: "Publications accepted by this hub.",
		}, func() float64 { return float64(s.hub.Stats().Published) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "duplex_delivered_total", Help: "Publications queued to sessions.",
		}, func() float64 { return float64(s.hub.Stats().Delivered) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "duplex_slow_consumer_closes_total", Help: "Sessions closed as slow consumers: their queue overflowed, or they held the most when the hub passed --max-queued-bytes.",
		}, func() float64 { return float64(s.hub.Stats().SlowCuts) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "duplex_queued_bytes", Help: "Outbound bytes held for all sessions: queued, or taken by a transport and not yet written (bound: --max-queued-bytes).",
		}, func() float64 { return float64(s.hub.Stats().QueuedBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "duplex_sessions", Help: "Open streaming sessions (ws, sse, stream, poll).",
		}, func() float64 { return float64(s.hub.Stats().Sessions) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "duplex_channels", Help: "Channels with at least one subscriber on this hub.",
		}, func() float64 { return float64(s.hub.Stats().Channels) }),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
