package proxy

import (
	"io"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// metrics are the server's counters. The hot ones are plain atomics, read
// by the registry only when scraped; finished requests are counted by
// protocol and outcome in a CounterVec.
type metrics struct {
	accepted         atomic.Int64
	open             atomic.Int64
	refused          [numRefusals]atomic.Int64 // by refusal
	upstreamFailures atomic.Int64
	active           atomic.Int64 // tunnels and forwarded requests in flight
	bytesUp          atomic.Int64
	bytesDown        atomic.Int64

	requests *prometheus.CounterVec // by proto, outcome
	reg      *prometheus.Registry
}

// init builds the registry over m's counters, in the Prometheus client
// library the hub's /metrics uses too.
func (m *metrics) init() {
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duplex_proxy_requests_total", Help: "Finished tunnels and requests, by protocol and outcome.",
	}, []string{"proto", "outcome"})
	counter := func(name, help string, v *atomic.Int64, labels prometheus.Labels) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	const refusedHelp = "Connections over a connection cap, by the cap (reason); each is answered in its protocol when it names a request."
	const bytesHelp = "Bytes relayed, by direction (up: client to target); tunnels count as bytes move."
	m.reg = prometheus.NewRegistry()
	m.reg.MustRegister(
		m.requests,
		counter("duplex_proxy_connections_accepted_total", "Client connections accepted.", &m.accepted, nil),
		gauge("duplex_proxy_connections_open", "Client connections open now.", &m.open),
		counter("duplex_proxy_connections_refused_total", refusedHelp, &m.refused[refuseMaxConns], prometheus.Labels{"reason": refuseMaxConns.String()}),
		counter("duplex_proxy_connections_refused_total", refusedHelp, &m.refused[refuseMaxConnsPerClient], prometheus.Labels{"reason": refuseMaxConnsPerClient.String()}),
		gauge("duplex_proxy_tunnels_active", "Tunnels and forwarded requests in flight.", &m.active),
		counter("duplex_proxy_upstream_failures_total", "Upstream proxies that failed and were skipped.", &m.upstreamFailures, nil),
		counter("duplex_proxy_bytes_total", bytesHelp, &m.bytesUp, prometheus.Labels{"direction": "up"}),
		counter("duplex_proxy_bytes_total", bytesHelp, &m.bytesDown, prometheus.Labels{"direction": "down"}),
	)
}

func (m *metrics) record(l *tunnelLog) {
	if !l.bytesCounted {
		m.bytesUp.Add(l.up)
		m.bytesDown.Add(l.down)
	}
	m.requests.WithLabelValues(l.proto, l.outcome.String()).Inc()
}

// WriteMetrics writes the server's counters in the Prometheus text
// exposition format.
func (s *Server) WriteMetrics(w io.Writer) error {
	families, err := s.metrics.reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return err
		}
	}
	return nil
}

// MetricsHandler serves the server's counters over HTTP.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
}
