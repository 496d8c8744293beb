package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler serves the hub's counters, read at scrape time, the
// engine's collectors (Config.Collectors) and the Go runtime and process
// collectors, in the Prometheus text format.
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
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "duplex_lost_delivery_resyncs_total", Help: "Times the engine said a channel's publications may have been missed (a Redis pub/sub connection dropped and came back), so the hub re-read its sessions' positions from history.",
		}, func() float64 { return float64(s.hub.Stats().Lost) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "duplex_ws_compressions_total", Help: "Messages compressed for WebSocket permessage-deflate: each publication once, however many subscribers take it compressed, and each echoed message.",
		}, func() float64 { return float64(s.ws.compressions.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "duplex_sessions", Help: "Open streaming sessions (ws, sse, stream, poll).",
		}, func() float64 { return float64(s.hub.Stats().Sessions) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "duplex_channels", Help: "Channels with at least one subscriber on this hub.",
		}, func() float64 { return float64(s.hub.Stats().Channels) }),
	)
	// The engine's series (Redis round trips, reconnects), given by the
	// caller that built the engine: the hub does not know them.
	reg.MustRegister(s.cfg.Collectors...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
