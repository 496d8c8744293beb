package proxy

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
)

// metrics are the server's counters, rendered by WriteMetrics.
type metrics struct {
	accepted         atomic.Int64
	open             atomic.Int64
	capRefused       atomic.Int64
	upstreamFailures atomic.Int64
	active           atomic.Int64 // tunnels and forwarded requests in flight
	bytesUp          atomic.Int64
	bytesDown        atomic.Int64

	mu       sync.Mutex          // guards outcomes
	outcomes map[[2]string]int64 // {proto, outcome} → count
}

func (m *metrics) record(l *tunnelLog) {
	if !l.bytesCounted {
		m.bytesUp.Add(l.up)
		m.bytesDown.Add(l.down)
	}
	m.mu.Lock()
	if m.outcomes == nil {
		m.outcomes = map[[2]string]int64{}
	}
	m.outcomes[[2]string{l.proto, l.outcome}]++
	m.mu.Unlock()
}

// WriteMetrics writes the server's counters in the Prometheus text
// exposition format.
func (s *Server) WriteMetrics(w io.Writer) error {
	m := &s.metrics
	var err error
	p := func(format string, a ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, a...)
		}
	}
	p("# HELP duplex_proxy_connections_accepted_total Client connections accepted.\n")
	p("# TYPE duplex_proxy_connections_accepted_total counter\n")
	p("duplex_proxy_connections_accepted_total %d\n", m.accepted.Load())
	p("# HELP duplex_proxy_connections_open Client connections open now.\n")
	p("# TYPE duplex_proxy_connections_open gauge\n")
	p("duplex_proxy_connections_open %d\n", m.open.Load())
	p("# HELP duplex_proxy_connections_refused_total Connections closed on accept by a connection cap.\n")
	p("# TYPE duplex_proxy_connections_refused_total counter\n")
	p("duplex_proxy_connections_refused_total %d\n", m.capRefused.Load())
	p("# HELP duplex_proxy_tunnels_active Tunnels and forwarded requests in flight.\n")
	p("# TYPE duplex_proxy_tunnels_active gauge\n")
	p("duplex_proxy_tunnels_active %d\n", m.active.Load())
	p("# HELP duplex_proxy_upstream_failures_total Upstream proxies that failed and were skipped.\n")
	p("# TYPE duplex_proxy_upstream_failures_total counter\n")
	p("duplex_proxy_upstream_failures_total %d\n", m.upstreamFailures.Load())
	p("# HELP duplex_proxy_bytes_total Bytes relayed, by direction (up: client to target); tunnels count as bytes move.\n")
	p("# TYPE duplex_proxy_bytes_total counter\n")
	p("duplex_proxy_bytes_total{direction=\"up\"} %d\n", m.bytesUp.Load())
	p("duplex_proxy_bytes_total{direction=\"down\"} %d\n", m.bytesDown.Load())
	p("# HELP duplex_proxy_requests_total Finished tunnels and requests, by protocol and outcome.\n")
	p("# TYPE duplex_proxy_requests_total counter\n")
	m.mu.Lock()
	keys := make([][2]string, 0, len(m.outcomes))
	for k := range m.outcomes {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		p("duplex_proxy_requests_total{proto=%q,outcome=%q} %d\n", k[0], k[1], m.outcomes[k])
	}
	m.mu.Unlock()
	return err
}

// MetricsHandler serves WriteMetrics over HTTP.
func (s *Server) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.WriteMetrics(w)
	})
}
