package bench

import "time"

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
	// Closed counts readers whose connection ended during the run.
	Closed int64 `json:"closed"`
}
