package bench

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// FanoutConfig configures one run of a fan-out workload (RunWSFanout,
// RunStreamFanout): Subscribers readers of one channel, and one publisher
// sending to it at a fixed rate. The zero value of each field but URL is
// usable.
type FanoutConfig struct {
	// URL is the hub's base URL, http://127.0.0.1:8080 say. Required.
	URL string
	// Transport is the readers' transport: "ws", "sse" or "stream"
	// (NDJSON). RunWSFanout always uses "ws"; for RunStreamFanout empty
	// means "sse".
	Transport string
	// Channel is the channel used. Empty means the transport's name
	// followed by "bench".
	Channel string
	// Subscribers is the number of readers. Zero means 1.
	Subscribers int
	// Rate is the publishes per second. Zero means 100.
	Rate float64
	// Duration is the measured time; Warmup runs before it, unmeasured.
	// Zero means 10s and 2s.
	Duration, Warmup time.Duration
	// Size is the size of each publication's data, in bytes (at least
	// 40). Zero means 100.
	Size int
	// DialParallel bounds the connections opened at once. Zero means 50.
	DialParallel int
	// PublishHTTP makes RunWSFanout publish with POSTs, as RunStreamFanout
	// does, instead of over a WebSocket of its own: for comparing
	// transports on the same publishing cost, which at low fan-out is a
	// good part of the hub's CPU per delivery.
	PublishHTTP bool
	// Compression makes RunWSFanout's subscribers offer permessage-deflate
	// (no context takeover, as browsers and the Go client can), so the hub
	// sends them what it compresses. False offers none.
	Compression bool
}

func (c FanoutConfig) withDefaults(transport string) FanoutConfig {
	if c.Transport == "" {
		c.Transport = transport
	}
	if c.Channel == "" {
		c.Channel = c.Transport + "bench"
	}
	c.Subscribers = max(c.Subscribers, 1)
	if c.Rate <= 0 {
		c.Rate = 100
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup <= 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Size <= 0 {
		c.Size = 100
	}
	c.Size = max(c.Size, 40)
	if c.DialParallel <= 0 {
		c.DialParallel = 50
	}
	return c
}

// FanoutResult is what a fan-out run measured; the transports compare line
// by line.
type FanoutResult struct {
	Transport   string  `json:"transport"`
	Subscribers int     `json:"subscribers"`
	Rate        float64 `json:"publish_rate"`
	Seconds     float64 `json:"seconds"`
	// Published counts the publications sent in the measured time;
	// Delivered the messages readers received of them, Expected
	// Published × Subscribers.
	Published int64 `json:"published"`
	Delivered int64 `json:"delivered"`
	Expected  int64 `json:"expected"`
	// DeliveredRate is Delivered per second of measured time.
	DeliveredRate float64 `json:"delivered_per_sec"`
	// Latency is publish (by the load generator's clock, just before the
	// publish is written) to receipt by a reader.
	Latency LatencySummary `json:"latency"`
	// HubCPU is the hub's CPU time over the measured time and the drain
	// after it, from process_cpu_seconds_total of its /metrics (its own
	// /proc/<pid>/stat), and HubCPUPerMillion that per million deliveries.
	HubCPU           float64 `json:"hub_cpu_seconds"`
	HubCPUPerMillion float64 `json:"hub_cpu_seconds_per_million"`
	// Closed counts readers whose connection ended during the run;
	// CloseReason says why the first one did.
	Closed      int64  `json:"closed"`
	CloseReason string `json:"close_reason,omitempty"`
	// WireBytesPerDelivery is what the readers read off their TCP
	// connections (frames, headers and all) over the measured time and the
	// drain after it, per delivery. RunWSFanout only; zero otherwise.
	WireBytesPerDelivery float64 `json:"wire_bytes_per_delivery,omitempty"`
}

// fanoutTally counts what the readers of a fan-out run receive: messages
// published inside the measured window (by the stamp they carry), their
// latency, in shards so that readers rarely contend on one lock, and the
// readers whose connection ended early.
type fanoutTally struct {
	// winStart and winEnd bound the measured window, as publish stamps
	// (Unix ns). Both start at the far future: nothing counts until the
	// publisher opens the window.
	winStart, winEnd  atomic.Int64
	delivered, closed atomic.Int64
	closeErr          atomic.Value // string: why the first reader's connection ended
	shards            [32]struct {
		mu sync.Mutex
		l  *Latency
	}
}

func newFanoutTally() *fanoutTally {
	f := &fanoutTally{}
	f.winStart.Store(1<<63 - 1)
	f.winEnd.Store(1<<63 - 1)
	for i := range f.shards {
		f.shards[i].l = NewLatency()
	}
	return f
}

// record counts a message stamped t that reader i received at now (both
// Unix ns), if t lies in the measured window.
func (f *fanoutTally) record(i int, t, now int64) {
	if t < f.winStart.Load() || t >= f.winEnd.Load() {
		return
	}
	f.delivered.Add(1)
	sh := &f.shards[i%len(f.shards)]
	sh.mu.Lock()
	sh.l.Record(time.Duration(now - t))
	sh.mu.Unlock()
}

// drain waits until expected messages were delivered, or for at most d.
func (f *fanoutTally) drain(expected int64, d time.Duration) {
	by := time.Now().Add(d)
	for f.delivered.Load() < expected && time.Now().Before(by) {
		time.Sleep(5 * time.Millisecond) // polling for the stragglers
	}
}

// result is the run's FanoutResult; call it once the readers have stopped.
func (f *fanoutTally) result(cfg FanoutConfig, readers int, published int64, hubCPU float64) FanoutResult {
	lat := NewLatency()
	for i := range f.shards {
		lat.Merge(f.shards[i].l)
	}
	delivered := f.delivered.Load()
	res := FanoutResult{
		Transport: cfg.Transport, Subscribers: readers, Rate: cfg.Rate, Seconds: cfg.Duration.Seconds(),
		Published: published, Delivered: delivered, Expected: published * int64(readers),
		DeliveredRate: float64(delivered) / cfg.Duration.Seconds(),
		Latency:       lat.Summary(), HubCPU: hubCPU, Closed: f.closed.Load(),
	}
	res.CloseReason, _ = f.closeErr.Load().(string)
	if delivered > 0 {
		res.HubCPUPerMillion = hubCPU / float64(delivered) * 1e6
	}
	return res
}

// WriteFanoutTable prints fan-out results as a table, a row each.
func WriteFanoutTable(w io.Writer, results []FanoutResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\treaders\tmsg/s\tdelivered/s\tdelivered\tp50\tp99\tmax\thub CPU-s per 10⁶\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%g\t%.0f\t%d/%d\t%s\t%s\t%s\t%.2f\t\n", r.Transport, r.Subscribers, r.Rate, r.DeliveredRate,
			r.Delivered, r.Expected, fmtMicros(r.Latency.P50), fmtMicros(r.Latency.P99), fmtMicros(r.Latency.Max), r.HubCPUPerMillion)
	}
	return tw.Flush()
}
