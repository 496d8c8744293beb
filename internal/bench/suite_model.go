package bench

import (
	"encoding/json"
	"io"
	"time"
)

// This file is the report model of `duplex bench`: every measurement the
// suite makes lands in one [SuiteReport], and the Markdown, the JSON and
// the charts are all rendered from it, never from the workloads' own
// types. Its JSON form is versioned (SchemaID, SchemaVersion) and
// described by docs/bench-report.schema.json; a field is only ever added,
// and removing or changing one bumps SchemaVersion.

// SchemaID names the JSON form of a [SuiteReport]; SchemaVersion is its
// version.
const (
	SchemaID      = "https://github.com/duplexhq/duplex/docs/bench-report.schema.json"
	SchemaVersion = 1
)

// SuiteReport is what one run of the default suite measured. Units are in
// the JSON names: _us microseconds, _ms milliseconds, _bytes bytes,
// _per_1000 per thousand delivered messages (or operations, where said).
type SuiteReport struct {
	Schema  string `json:"$schema"`
	Version int    `json:"schema_version"`
	// Workload is what produced the report: "suite" (the default suite,
	// every section), "fanout" (Delivery rows only) or "publish"
	// (Publish only).
	Workload string    `json:"workload"`
	Started  time.Time `json:"started"`
	// WallSeconds is how long the suite took.
	WallSeconds float64      `json:"wall_seconds"`
	Machine     MachineInfo  `json:"machine"`
	Config      SuiteConfig  `json:"config"`
	Hubs        []HubInfo    `json:"hubs"`
	Claims      []Claim      `json:"claims"`
	Delivery    []Delivery   `json:"delivery"`
	Ladder      []LadderStep `json:"ladder"`
	Peaks       []Peak       `json:"peaks"`
	Cold        []ColdStart  `json:"cold_start"`
	Upstream    []Upstream   `json:"upstream"`
	Cacheable   []CacheRead  `json:"cacheable"`
	Idle        []IdleCost   `json:"idle"`
	// Proxy is the check of each transport through --proxy against the
	// same transport direct; empty without --proxy.
	Proxy []ProxyVerdict `json:"proxy"`
	// Publish holds the runs of `duplex bench publish`; empty otherwise.
	Publish []Run `json:"publish"`
	// Warnings are things that make the figures less trustworthy: a busy
	// machine, a saturated load generator, a transport that failed.
	Warnings []string `json:"warnings"`
}

// MachineInfo describes where the suite ran.
type MachineInfo struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	MemoryMiB int64  `json:"memory_mib"`
	// LoadBefore and LoadAfter are the 1, 5 and 15 minute load averages
	// (/proc/loadavg) at the start and the end; zeros where unknown.
	LoadBefore [3]float64 `json:"load_before"`
	LoadAfter  [3]float64 `json:"load_after"`
	// Busy is true when a load average exceeded the cores: other work
	// competed with the suite, and the latencies say less.
	Busy bool `json:"busy"`
}

// HubInfo says which hub the suite measured and how it was configured.
type HubInfo struct {
	// Name is how the report refers to it: "default", "write-delay-0",
	// or "url".
	Name string `json:"name"`
	URL  string `json:"url"`
	// PID is the hub's process when the suite started it (CPU is then
	// read from /proc/<pid>/stat); 0 for --url (CPU from its /metrics).
	PID int `json:"pid"`
	// WriteDelayMS is the hub's --write-delay in milliseconds; -1 when
	// unknown (a hub the suite did not start).
	WriteDelayMS float64 `json:"write_delay_ms"`
	// Proxy is the proxy the transports went through; empty for none.
	Proxy string `json:"proxy"`
}

// Claim is one row of the six-claims table: the claim, the figure from
// this run that bears on it, and what the figure says.
type Claim struct {
	ID       string `json:"id"`
	Claim    string `json:"claim"`
	Measured string `json:"measured"`
	// Verdict is "supported", "contradicted", "depends" or "not measured".
	Verdict string `json:"verdict"`
	Reading string `json:"reading"`
}

// Stats is the min, median and max of one figure over the --repeat
// rounds.
type Stats struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// CDFPoint is one point of a latency distribution: Fraction of the
// deliveries took at most LatencyUS.
type CDFPoint struct {
	LatencyUS float64 `json:"latency_us"`
	Fraction  float64 `json:"fraction"`
}

// Delivery is one transport variant's fan-out: Subscribers readers of one
// channel, a publisher POSTing at Rate, for --duration per round.
type Delivery struct {
	// Transport is ws, sse, stream, poll (long polling) or history
	// (plain polling of the history endpoint every PollIntervalMS, with
	// If-None-Match).
	Transport string `json:"transport"`
	// Variant names this row: the transport and its setting.
	Variant string `json:"variant"`
	Hub     string `json:"hub"`
	// KeepAlive is whether HTTP connections were reused (always true for
	// ws, which has one connection).
	KeepAlive      bool    `json:"keep_alive"`
	PollIntervalMS float64 `json:"poll_interval_ms"`
	Subscribers    int     `json:"subscribers"`
	Rate           float64 `json:"publish_rate"`
	Rounds         int     `json:"rounds"`
	// Seconds is the measured time, summed over the rounds.
	Seconds float64 `json:"seconds"`
	// Published, Delivered and Expected (Published × Subscribers) are
	// summed over the rounds.
	Published int64 `json:"published"`
	Delivered int64 `json:"delivered"`
	Expected  int64 `json:"expected"`
	// Latency is publish (the publisher's clock just before its POST)
	// to the reader's decode of the message, merged over the rounds;
	// P50US and P99US give each round's spread.
	Latency LatencySummary `json:"latency"`
	P50US   Stats          `json:"p50_us_rounds"`
	P99US   Stats          `json:"p99_us_rounds"`
	CDF     []CDFPoint     `json:"cdf"`
	// Per delivered message, counted at the readers' sockets: bytes
	// server→client (Down) and client→server (Up), all headers and
	// framing included.
	DownBytesPerMsg float64 `json:"down_bytes_per_msg"`
	UpBytesPerMsg   float64 `json:"up_bytes_per_msg"`
	// Per 1,000 delivered messages: TCP connections opened and HTTP
	// requests (or WebSocket handshakes) made by the readers.
	HandshakesPer1000 float64 `json:"handshakes_per_1000"`
	RequestsPer1000   float64 `json:"requests_per_1000"`
	// MessagesPerResponse is messages delivered per HTTP response (for
	// sse and stream, one open response per reader); 0 for ws.
	MessagesPerResponse float64 `json:"messages_per_response"`
	// HubCPUMSPer1000 and ClientCPUMSPer1000 are CPU milliseconds per
	// 1,000 deliveries of the hub and of this load generator.
	HubCPUMSPer1000    float64 `json:"hub_cpu_ms_per_1000"`
	ClientCPUMSPer1000 float64 `json:"client_cpu_ms_per_1000"`
	// ClientCPUCores is the load generator's CPU over wall time, in
	// cores: near the machine's cores, the client was the bottleneck.
	ClientCPUCores float64 `json:"client_cpu_cores"`
	Error          string  `json:"error"`
}

// LadderStep is one rung of the rate ladder: deliveries per second and
// latency at a publish rate.
type LadderStep struct {
	Transport    string  `json:"transport"`
	Rate         float64 `json:"publish_rate"`
	Subscribers  int     `json:"subscribers"`
	DeliveredSec float64 `json:"delivered_per_sec"`
	Expected     int64   `json:"expected"`
	Delivered    int64   `json:"delivered"`
	P50US        float64 `json:"p50_us"`
	P99US        float64 `json:"p99_us"`
	// RanAway is true when p99 passed the ladder's bound or deliveries
	// fell short.
	RanAway bool   `json:"ran_away"`
	Error   string `json:"error"`
}

// Peak is the highest delivered messages per second a transport reached on
// the ladder before its p99 ran away (Bound says the bound).
type Peak struct {
	Transport    string  `json:"transport"`
	DeliveredSec float64 `json:"delivered_per_sec"`
	Bound        string  `json:"bound"`
	// Capped is true when no rung ran away: the peak is the ladder's
	// top, not the transport's limit.
	Capped bool `json:"capped"`
}

// ColdStart is the time a new client takes, from nothing (TCP connect,
// HTTP request, upgrade), to its first message (one already published,
// asked for by cursor).
type ColdStart struct {
	Transport string         `json:"transport"`
	Samples   int            `json:"samples"`
	Latency   LatencySummary `json:"latency"`
	Error     string         `json:"error"`
}

// Upstream is client→server latency: a publish acknowledged, made by a
// client that is receiving at the same time.
type Upstream struct {
	// Path is "ws" (a publish command on the open WebSocket), "post"
	// (POST on a kept-alive connection beside an SSE stream) or
	// "post-new-conn" (POST with keep-alive off).
	Path    string         `json:"path"`
	Samples int            `json:"samples"`
	Latency LatencySummary `json:"latency"`
	// UpBytesPerOp and DownBytesPerOp are bytes on the wire per publish
	// (the down side includes the messages being received at the same
	// time on a WebSocket); HandshakesPer1000 and RequestsPer1000 are per
	// 1,000 publishes.
	UpBytesPerOp      float64 `json:"up_bytes_per_op"`
	HandshakesPer1000 float64 `json:"handshakes_per_1000"`
	RequestsPer1000   float64 `json:"requests_per_1000"`
	Error             string  `json:"error"`
}

// CacheRead is the cost of reading one history page again.
type CacheRead struct {
	// Path is "http-first" (200), "http-revalidate" (If-None-Match, 304),
	// "http-immutable" (a cache honouring Cache-Control: immutable asks
	// nothing) or "ws-history" (the history command on an open socket).
	Path           string         `json:"path"`
	Status         int            `json:"status"`
	Samples        int            `json:"samples"`
	Messages       int            `json:"messages"`
	DownBytesPerOp float64        `json:"down_bytes_per_op"`
	UpBytesPerOp   float64        `json:"up_bytes_per_op"`
	Latency        LatencySummary `json:"latency"`
	CacheControl   string         `json:"cache_control"`
	Error          string         `json:"error"`
}

// IdleCost is the hub's memory per idle subscriber of one transport, from
// its /metrics before and with Subscribers idle readers.
type IdleCost struct {
	Transport   string  `json:"transport"`
	Subscribers int     `json:"subscribers"`
	HeapKiB     float64 `json:"heap_kib_per_sub"`
	StackKiB    float64 `json:"stack_kib_per_sub"`
	RSSKiB      float64 `json:"rss_kib_per_sub"`
	Goroutines  float64 `json:"goroutines_per_sub"`
	// FreshHub is true when the figures come from a hub started for this
	// measurement alone, with GOGC=10 (see SuiteConfig.FreshHub).
	FreshHub bool   `json:"fresh_hub,omitempty"`
	Error    string `json:"error"`
}

// ProxyVerdict says what a proxy did to one transport: "ok", "buffered"
// (messages arrived, late and in bursts) or "broken" (they did not).
type ProxyVerdict struct {
	Transport  string  `json:"transport"`
	Verdict    string  `json:"verdict"`
	DirectP50  float64 `json:"direct_p50_us"`
	ProxyP50   float64 `json:"proxy_p50_us"`
	Delivered  int64   `json:"delivered"`
	Expected   int64   `json:"expected"`
	Detail     string  `json:"detail"`
	ProxiedURL string  `json:"proxy"`
}

// WriteJSON writes r as indented JSON and a newline.
func (r *SuiteReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
