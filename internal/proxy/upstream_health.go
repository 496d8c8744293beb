package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// upstreamFailAfter is how many health probes in a row an upstream must
// fail to be taken out of rotation: one lost probe is not an outage. One
// success puts it back.
const upstreamFailAfter = 2

// upstreamHealth runs Config.UpstreamProbe on every upstream and keeps
// the verdicts dialUpstreams reads.
type upstreamHealth struct {
	s      *Server
	every  time.Duration
	down   []atomic.Bool // by index in cfg.Upstreams
	fails  []int         // consecutive failures; owned by run
	stopc  chan struct{}
	wg     sync.WaitGroup
	stopMu sync.Once
}

// startUpstreamHealth starts the probes when the config asks for them;
// nil otherwise (every method works on nil).
func startUpstreamHealth(s *Server) *upstreamHealth {
	if s.cfg.UpstreamProbe == nil || len(s.cfg.Upstreams) == 0 {
		return nil
	}
	h := &upstreamHealth{
		s: s, every: s.cfg.UpstreamHealthInterval,
		down: make([]atomic.Bool, len(s.cfg.Upstreams)), fails: make([]int, len(s.cfg.Upstreams)),
		stopc: make(chan struct{}),
	}
	for i, u := range s.cfg.Upstreams {
		s.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "duplex_proxy_upstream_up",
			Help:        "1 while the upstream passes its health probes and is in rotation, 0 while it is out.",
			ConstLabels: prometheus.Labels{"upstream": u.Redacted()},
		}, func() float64 {
			if h.down[i].Load() {
				return 0
			}
			return 1
		}))
	}
	h.wg.Go(h.run)
	return h
}

// isDown reports whether upstream i is out of rotation.
func (h *upstreamHealth) isDown(i int) bool {
	return h != nil && h.down[i].Load()
}

// stop ends the probes and waits for them.
func (h *upstreamHealth) stop() {
	if h == nil {
		return
	}
	h.stopMu.Do(func() { close(h.stopc) })
	h.wg.Wait()
}

func (h *upstreamHealth) run() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-h.stopc:
			cancel()
		case <-ctx.Done():
		}
	}()
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		h.probeAll(ctx)
		select {
		case <-t.C:
		case <-h.stopc:
			return
		}
	}
}

// probeAll probes every upstream at once and records the verdicts.
func (h *upstreamHealth) probeAll(ctx context.Context) {
	errs := make([]error, len(h.s.cfg.Upstreams))
	var wg sync.WaitGroup
	for i, u := range h.s.cfg.Upstreams {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, min(h.every, 5*time.Second))
			defer cancel()
			errs[i] = h.s.cfg.UpstreamProbe(pctx, h.tunnel(u))
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	log := h.s.cfg.Logger
	for i, u := range h.s.cfg.Upstreams {
		if errs[i] == nil {
			h.fails[i] = 0
			if h.down[i].Swap(false) {
				log.Info("upstream recovered: back in rotation", "upstream", u.Redacted())
			}
			continue
		}
		h.fails[i]++
		if h.fails[i] >= upstreamFailAfter && !h.down[i].Swap(true) {
			log.Warn("upstream stopped carrying: out of rotation", "upstream", u.Redacted(), "err", errs[i].Error())
		}
	}
}

// tunnel dials any address through upstream u, resolving names here as
// dialVia wants an ip:port.
func (h *upstreamHealth) tunnel(u *url.URL) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			return h.s.dialVia(ctx, u, net.JoinHostPort(ip.Unmap().String(), port))
		}
		ips, err := h.s.cfg.LookupNetIP(ctx, host)
		if err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("no address for %s", host)
		}
		return h.s.dialVia(ctx, u, net.JoinHostPort(ips[0].Unmap().String(), port))
	}
}
