package bench

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// SuiteConfig scales the default suite. The zero value of each field is
// usable and documented; the JSON names carry units.
type SuiteConfig struct {
	// FreshHub, when set, starts a new hub for each idle-memory
	// measurement and returns it with a func that stops it: a hub that
	// measured another transport holds that transport's freed memory as
	// garbage until its next collection, which then lands in the next
	// measurement (an idle process runs none) and can make it negative.
	// Nil measures idle memory on the main hub, or on a hub named
	// IdleMemoryHub.
	FreshHub func(ctx context.Context) (HubInfo, func(), error) `json:"-"`
	// Duration is the measured time of each delivery round; Warmup runs
	// unmeasured before it. Zero means 2s and 500ms.
	Duration time.Duration `json:"duration_ns"`
	Warmup   time.Duration `json:"warmup_ns"`
	// Subscribers is the readers per delivery measurement. Zero means 50.
	Subscribers int `json:"subscribers"`
	// Rate is publications per second in the delivery measurements, and
	// the ladder's first rung. Zero means 50.
	Rate float64 `json:"publish_rate"`
	// Size is bytes of data per publication (at least 40). Zero means 100.
	Size int `json:"size_bytes"`
	// Repeat is the rounds of each delivery measurement, interleaved
	// across transports. Zero means 1.
	Repeat int `json:"repeat"`
	// PollInterval is the plain (history) pollers' interval T. Zero
	// means 250ms.
	PollInterval time.Duration `json:"poll_interval_ns"`
	// LadderSteps is the rungs of the rate ladder, each four times the
	// last, from Rate; LadderStep the measured time of each. Zero means
	// 5 and 1s.
	LadderSteps int           `json:"ladder_steps"`
	LadderStep  time.Duration `json:"ladder_step_ns"`
	// Samples is the repetitions of the cold-start, upstream and
	// cacheable probes. Zero means 20 (cold start: a quarter of it).
	Samples int `json:"samples"`
	// IdleSubscribers is the idle readers per transport of the memory
	// measurement; IdleSettle how long they idle first. Zero means 200
	// and 1s.
	IdleSubscribers int           `json:"idle_subscribers"`
	IdleSettle      time.Duration `json:"idle_settle_ns"`
	// Proxy, when set, is a proxy URL every transport's readers go
	// through; the suite then also checks each transport through it
	// against direct. Empty means none.
	Proxy string `json:"proxy"`
	// Quick shortens everything to a smoke test of seconds: figures
	// from it mean little.
	Quick bool `json:"quick"`
}

// WithDefaults returns c with zero fields filled in (Quick first).
func (c SuiteConfig) WithDefaults() SuiteConfig {
	if c.Quick {
		def := func(d *time.Duration, v time.Duration) {
			if *d <= 0 {
				*d = v
			}
		}
		def(&c.Duration, 300*time.Millisecond)
		def(&c.Warmup, 100*time.Millisecond)
		def(&c.PollInterval, 50*time.Millisecond)
		def(&c.LadderStep, 200*time.Millisecond)
		def(&c.IdleSettle, 100*time.Millisecond)
		if c.Subscribers <= 0 {
			c.Subscribers = 3
		}
		if c.LadderSteps <= 0 {
			c.LadderSteps = 2
		}
		if c.Samples <= 0 {
			c.Samples = 4
		}
		if c.IdleSubscribers <= 0 {
			c.IdleSubscribers = 3
		}
	}
	if c.Duration <= 0 {
		c.Duration = 2 * time.Second
	}
	if c.Warmup <= 0 {
		c.Warmup = 500 * time.Millisecond
	}
	if c.Subscribers <= 0 {
		c.Subscribers = 50
	}
	if c.Rate <= 0 {
		c.Rate = 50
	}
	if c.Size <= 0 {
		c.Size = 100
	}
	c.Size = max(c.Size, 40)
	if c.Repeat <= 0 {
		c.Repeat = 1
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 250 * time.Millisecond
	}
	if c.LadderSteps <= 0 {
		c.LadderSteps = 5
	}
	if c.LadderStep <= 0 {
		c.LadderStep = time.Second
	}
	if c.Samples <= 0 {
		c.Samples = 20
	}
	if c.IdleSubscribers <= 0 {
		c.IdleSubscribers = 200
	}
	if c.IdleSettle <= 0 {
		c.IdleSettle = time.Second
	}
	return c
}

// connectWait bounds one connection or subscription of the suite's
// clients: 10s, 2s in a quick run (a proxy that refuses a transport then
// costs seconds, not minutes).
func (c SuiteConfig) connectWait() time.Duration {
	if c.Quick {
		return 2 * time.Second
	}
	return 10 * time.Second
}

// Progress is told, before each step of the suite, how many steps are done
// of how many, and what comes next.
type Progress func(done, total int, what string)

// SuiteTransports are the transports the suite compares, in report order.
var SuiteTransports = []string{"ws", "sse", "stream", "poll", "history"}

// variantOf is one delivery row to measure.
type variantOf struct {
	name      string
	transport string
	hub       HubInfo
	keepAlive bool
}

// IdleMemoryHub names the hubs the suite reads memory per idle subscriber
// on: each fresh (see SuiteConfig.FreshHub) and run with a small GOGC, so
// that its heap in use with the subscribers open is what they hold, not
// garbage an idle hub never collects (an idle process runs no GC, so on a
// hub with the default GOGC the heap figure moved by whatever came before,
// and could come out negative).
const IdleMemoryHub = "idle-memory"

// RunSuite runs the default suite against hubs: hubs[0] is measured for
// every transport; a hub named "write-delay-0", when given, is measured
// for WebSocket too, to show write coalescing's effect on latency; a hub
// named IdleMemoryHub, when given, is the one whose memory per idle
// subscriber is read (see IdleMemoryHub).
func RunSuite(ctx context.Context, cfg SuiteConfig, hubs []HubInfo, progress Progress) (*SuiteReport, error) {
	if len(hubs) == 0 {
		return nil, fmt.Errorf("bench: no hub to measure")
	}
	cfg = cfg.WithDefaults()
	if progress == nil {
		progress = func(int, int, string) {}
	}
	for i := range hubs {
		hubs[i].Proxy = cfg.Proxy
	}
	start := time.Now()
	r := &SuiteReport{
		Schema: SchemaID, Version: SchemaVersion, Workload: "suite", Started: start.UTC().Truncate(time.Second),
		Machine: DescribeMachine(), Config: cfg, Hubs: hubs,
	}
	main := hubs[0]

	var variants []variantOf
	wsName := "ws"
	if main.WriteDelayMS >= 0 {
		wsName = fmt.Sprintf("ws (write-delay %gms)", main.WriteDelayMS)
	}
	variants = append(variants, variantOf{wsName, "ws", main, true})
	for _, h := range hubs[1:] {
		if h.Name == "write-delay-0" {
			variants = append(variants, variantOf{"ws (write-delay 0)", "ws", h, true})
		}
	}
	variants = append(variants,
		variantOf{"sse", "sse", main, true},
		variantOf{"stream", "stream", main, true},
		variantOf{"poll, keep-alive", "poll", main, true},
		variantOf{"poll, no keep-alive", "poll", main, false},
		variantOf{"history, keep-alive", "history", main, true},
		variantOf{"history, no keep-alive", "history", main, false},
	)
	ladderTransports := SuiteTransports
	coldTransports := SuiteTransports
	idleTransports := []string{"ws", "sse", "stream", "poll"}
	total := len(variants)*cfg.Repeat + len(ladderTransports) + len(coldTransports) + 2 + len(idleTransports)
	if cfg.Proxy != "" {
		total += len(SuiteTransports)
	}
	step := 0
	next := func(what string) {
		progress(step, total, what)
		step++
	}

	// Idle memory first, while the hub is fresh: after the other
	// measurements its heap has grown, and new connections reuse the
	// freed memory without raising RSS.
	idleHub := main
	for _, h := range hubs[1:] {
		if h.Name == IdleMemoryHub {
			idleHub = h
		}
	}
	for _, t := range idleTransports {
		next("memory per idle subscriber: " + t)
		hub, stop := idleHub, func() {}
		if cfg.FreshHub != nil {
			h, st, err := cfg.FreshHub(ctx)
			if err != nil {
				r.Idle = append(r.Idle, IdleCost{Transport: t, Subscribers: cfg.IdleSubscribers, Error: "start a hub: " + err.Error()})
				continue
			}
			h.Proxy = cfg.Proxy
			hub, stop = h, st
		}
		cost := measureIdleCost(ctx, hub, t, cfg.IdleSubscribers, cfg.IdleSettle, cfg.Proxy, cfg.connectWait())
		cost.FreshHub = cfg.FreshHub != nil
		r.Idle = append(r.Idle, cost)
		stop()
	}

	// Delivery, the rounds interleaved so that a drift of the machine
	// falls on every transport alike.
	rounds := make([][]deliveryRound, len(variants))
	errs := make([]string, len(variants))
	for round := range cfg.Repeat {
		for i, v := range variants {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			next(fmt.Sprintf("delivery: %s, round %d", v.name, round+1))
			d, err := runDelivery(ctx, deliverySpec{
				hub: v.hub, transport: v.transport, keepAlive: v.keepAlive, pollInterval: cfg.PollInterval,
				subscribers: cfg.Subscribers, rate: cfg.Rate, size: cfg.Size, warmup: cfg.Warmup,
				duration: cfg.Duration, proxy: cfg.Proxy, readyTimeout: cfg.connectWait(),
			})
			if err != nil {
				errs[i] = err.Error()
				continue
			}
			rounds[i] = append(rounds[i], d)
		}
	}
	for i, v := range variants {
		r.Delivery = append(r.Delivery, summarizeDelivery(v, cfg, rounds[i], errs[i]))
	}

	for _, t := range ladderTransports {
		next("rate ladder: " + t)
		steps, peak := runLadder(ctx, main, t, cfg)
		r.Ladder = append(r.Ladder, steps...)
		r.Peaks = append(r.Peaks, peak)
	}
	for _, t := range coldTransports {
		next("cold start: " + t)
		r.Cold = append(r.Cold, measureCold(ctx, main, t, max(cfg.Samples/4, 3), cfg.Size, cfg.Proxy, cfg.connectWait()))
	}
	next("client→server latency while receiving")
	r.Upstream = measureUpstream(ctx, main, cfg.Samples, cfg.Rate, cfg.Size, cfg.Proxy, cfg.connectWait())
	next("cacheable history reads")
	r.Cacheable = measureCacheable(ctx, main, cfg.Samples, cfg.Size, cfg.Proxy, cfg.connectWait())
	if cfg.Proxy != "" {
		for _, t := range SuiteTransports {
			next("proxy check: " + t)
			r.Proxy = append(r.Proxy, checkProxy(ctx, main, t, cfg))
		}
	}
	progress(total, total, "done")
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	r.Machine.LoadAfter = LoadAverage()
	r.WallSeconds = round1(time.Since(start).Seconds())
	r.finish()
	return r, nil
}

// summarizeDelivery folds a variant's rounds into its report row.
func summarizeDelivery(v variantOf, cfg SuiteConfig, rounds []deliveryRound, errText string) Delivery {
	d := Delivery{
		Transport: v.transport, Variant: v.name, Hub: v.hub.Name, KeepAlive: v.keepAlive,
		Subscribers: cfg.Subscribers, Rate: cfg.Rate, Rounds: len(rounds), Error: errText,
		CDF: []CDFPoint{},
	}
	if v.transport == "history" {
		d.PollIntervalMS = float64(cfg.PollInterval) / float64(time.Millisecond)
	}
	lat := NewLatency()
	var p50s, p99s []float64
	var wire WireTotals
	var hubCPU, clientCPU, wall time.Duration
	hubKnown := true
	for _, rd := range rounds {
		d.Published += rd.published
		d.Delivered += rd.delivered
		d.Expected += rd.expected
		lat.Merge(rd.latency)
		s := rd.latency.Summary()
		p50s, p99s = append(p50s, s.P50), append(p99s, s.P99)
		wire.Dials += rd.wire.Dials
		wire.Requests += rd.wire.Requests
		wire.Read += rd.wire.Read
		wire.Written += rd.wire.Written
		hubCPU += rd.hubCPU
		clientCPU += rd.clientCPU
		wall += rd.wall
		hubKnown = hubKnown && rd.hubCPUKnown
	}
	d.Latency = lat.Summary()
	d.Seconds = round1(cfg.Duration.Seconds() * float64(len(rounds)))
	d.P50US, d.P99US = statsOf(p50s), statsOf(p99s)
	d.CDF = lat.CDF()
	if n := float64(d.Delivered); n > 0 {
		d.DownBytesPerMsg = round1(float64(wire.Read) / n)
		d.UpBytesPerMsg = round1(float64(wire.Written) / n)
		d.HandshakesPer1000 = round1(float64(wire.Dials) / n * 1000)
		d.RequestsPer1000 = round1(float64(wire.Requests) / n * 1000)
		switch v.transport {
		case "sse", "stream":
			d.MessagesPerResponse = round1(n / float64(max(wire.Requests, int64(len(rounds)*cfg.Subscribers))))
		case "poll", "history":
			if wire.Requests > 0 {
				d.MessagesPerResponse = round1(n / float64(wire.Requests))
			}
		}
		if hubKnown {
			d.HubCPUMSPer1000 = round1(hubCPU.Seconds() * 1e3 / n * 1000)
		}
		d.ClientCPUMSPer1000 = round1(clientCPU.Seconds() * 1e3 / n * 1000)
	}
	if wall > 0 {
		d.ClientCPUCores = float64(int64(clientCPU.Seconds()/wall.Seconds()*100+0.5)) / 100
	}
	if d.Error == "" && d.Delivered < d.Expected {
		d.Error = fmt.Sprintf("delivered %d of %d", d.Delivered, d.Expected)
	}
	return d
}

// statsOf is the min, median and max of vs.
func statsOf(vs []float64) Stats {
	if len(vs) == 0 {
		return Stats{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return Stats{Min: s[0], Median: s[len(s)/2], Max: s[len(s)-1]}
}

// CDF returns the distribution as points, at quantiles dense enough to
// draw it (and dense at the tail).
func (l *Latency) CDF() []CDFPoint {
	out := []CDFPoint{}
	if l.h.TotalCount() == 0 {
		return out
	}
	for _, q := range cdfQuantiles {
		out = append(out, CDFPoint{LatencyUS: round1(float64(l.h.ValueAtQuantile(q)) / 1e3), Fraction: q / 100})
	}
	return out
}

var cdfQuantiles = func() []float64 {
	var qs []float64
	for q := 1.0; q < 90; q += 3 {
		qs = append(qs, q)
	}
	return append(qs, 90, 92, 94, 95, 96, 97, 98, 99, 99.5, 99.9, 100)
}()

// runLadder publishes to transport at rates rising four-fold from
// cfg.Rate until p99 runs away, and returns the rungs and the peak.
func runLadder(ctx context.Context, hub HubInfo, transport string, cfg SuiteConfig) ([]LadderStep, Peak) {
	subs := max(min(cfg.Subscribers, 10), 1)
	peak := Peak{Transport: transport, Capped: true}
	var steps []LadderStep
	var firstP99 float64
	rate := cfg.Rate
	for i := range cfg.LadderSteps {
		rd, err := runDelivery(ctx, deliverySpec{
			hub: hub, transport: transport, keepAlive: true, pollInterval: cfg.PollInterval,
			subscribers: subs, rate: rate, size: cfg.Size, warmup: min(cfg.Warmup, 200*time.Millisecond),
			duration: cfg.LadderStep, proxy: cfg.Proxy, readyTimeout: cfg.connectWait(),
		})
		st := LadderStep{Transport: transport, Rate: rate, Subscribers: subs}
		if err != nil {
			st.Error, st.RanAway = err.Error(), true
		} else {
			s := rd.latency.Summary()
			st.Delivered, st.Expected, st.P50US, st.P99US = rd.delivered, rd.expected, s.P50, s.P99
			st.DeliveredSec = round1(float64(rd.delivered) / cfg.LadderStep.Seconds())
			if i == 0 {
				firstP99 = s.P99
			}
			bound := max(10*firstP99, firstP99+50e3)
			peak.Bound = fmt.Sprintf("p99 above %s (10× the first rung's, at least +50ms) or under 95%% delivered", fmtMicros(bound))
			st.RanAway = s.P99 > bound || float64(rd.delivered) < 0.95*float64(rd.expected)
		}
		steps = append(steps, st)
		if st.RanAway {
			peak.Capped = false
			break
		}
		peak.DeliveredSec = st.DeliveredSec
		rate *= 4
	}
	return steps, peak
}

// checkProxy runs a short delivery of transport direct and through the
// proxy and says what the proxy did.
func checkProxy(ctx context.Context, hub HubInfo, transport string, cfg SuiteConfig) ProxyVerdict {
	// At least 1s at 100 msg/s: enough bytes that a proxy buffering
	// some KiB passes some of them on within the run.
	spec := deliverySpec{
		hub: hub, transport: transport, keepAlive: true, pollInterval: cfg.PollInterval,
		subscribers: 2, rate: max(cfg.Rate, 100), size: cfg.Size, warmup: cfg.Warmup, duration: max(cfg.Duration, time.Second),
		readyTimeout: cfg.connectWait(),
	}
	v := ProxyVerdict{Transport: transport, ProxiedURL: cfg.Proxy}
	direct, err := runDelivery(ctx, spec)
	if err != nil {
		v.Verdict, v.Detail = "broken", "direct: "+err.Error()
		return v
	}
	v.DirectP50 = direct.latency.Summary().P50
	spec.proxy = cfg.Proxy
	via, err := runDelivery(ctx, spec)
	if err != nil {
		v.Verdict, v.Detail = "broken", err.Error()
		return v
	}
	v.ProxyP50, v.Delivered, v.Expected = via.latency.Summary().P50, via.delivered, via.expected
	switch {
	case via.delivered == 0 || float64(via.delivered) < 0.1*float64(via.expected):
		v.Verdict = "broken"
		v.Detail = fmt.Sprintf("delivered %d of %d through the proxy", via.delivered, via.expected)
	case v.ProxyP50 > max(3*v.DirectP50, v.DirectP50+100e3):
		v.Verdict = "buffered"
		v.Detail = fmt.Sprintf("median latency %s through the proxy against %s direct, %d of %d delivered by the end: held back, then sent in bursts", fmtMicros(v.ProxyP50), fmtMicros(v.DirectP50), via.delivered, via.expected)
	default:
		v.Verdict = "ok"
		v.Detail = fmt.Sprintf("median latency %s through the proxy, %s direct", fmtMicros(v.ProxyP50), fmtMicros(v.DirectP50))
	}
	return v
}

// finish fills what is derived from the measurements: empty lists for
// JSON, warnings and the six claims.
func (r *SuiteReport) finish() {
	ensure(&r.Warnings)
	ensure(&r.Delivery)
	ensure(&r.Ladder)
	ensure(&r.Peaks)
	ensure(&r.Cold)
	ensure(&r.Upstream)
	ensure(&r.Cacheable)
	ensure(&r.Idle)
	ensure(&r.Proxy)
	ensure(&r.Publish)
	ensure(&r.Claims)
	ensure(&r.Hubs)
	cores := float64(r.Machine.Cores)
	if r.Machine.LoadBefore[0] > cores || r.Machine.LoadAfter[0] > cores {
		r.Machine.Busy = true
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"busy machine: load average %.1f before and %.1f after on %d cores; other work competed with the suite, so latencies and rates are pessimistic (bytes and request counts are not affected)",
			r.Machine.LoadBefore[0], r.Machine.LoadAfter[0], r.Machine.Cores))
	}
	for _, d := range r.Delivery {
		if d.ClientCPUCores > 0.8*cores {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: the load generator used %.2f of %d cores; the client, not the hub, may have been the bottleneck", d.Variant, d.ClientCPUCores, r.Machine.Cores))
		}
		if d.Error != "" {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s: %s", d.Variant, d.Error))
		}
	}
	if r.Config.Quick {
		r.Warnings = append(r.Warnings, "quick run (--quick): every measurement was cut to a fraction of a second; the figures show the suite works, not what the machine can do")
	}
	if len(r.Hubs) == 1 && r.Hubs[0].WriteDelayMS < 0 && len(r.Delivery) > 0 {
		r.Warnings = append(r.Warnings, "the hub at --url was measured as it is configured; its --write-delay is unknown to the suite, and WebSocket, SSE and NDJSON latencies at low rates include up to that delay. Run it again against a hub started with --write-delay 0 to see the other setting")
	}
	if r.Workload == "suite" {
		r.Claims = buildClaims(r)
	}
}

func ensure[T any](p *[]T) {
	if *p == nil {
		*p = []T{}
	}
}
