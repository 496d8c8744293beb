package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// PollLoadConfig configures the long-polling workload: Pollers clients each
// polling /v1/poll on one channel in a loop, cursor to cursor, over
// keep-alive connections, while one publisher POSTs at a fixed rate. The
// zero value of each field but URL is usable.
type PollLoadConfig struct {
	// URL is the hub's base URL. Required.
	URL string
	// Channel is the channel used. Empty means "pollbench".
	Channel string
	// Pollers is the number of polling clients. Zero means 1000.
	Pollers int
	// Rate is the publishes per second. Zero means 10.
	Rate float64
	// Timeout is each poll's timeout=. Zero means 25s.
	Timeout time.Duration
	// Duration is the measured time; Warmup runs before it. Zero means
	// 10s and 2s.
	Duration, Warmup time.Duration
	// Size is the size of each publication's data (at least 40). Zero
	// means 100.
	Size int
}

// PollLoadResult is what a long-polling run measured.
type PollLoadResult struct {
	Pollers       int     `json:"pollers"`
	Rate          float64 `json:"publish_rate"`
	Seconds       float64 `json:"seconds"`
	Published     int64   `json:"published"`
	Delivered     int64   `json:"delivered"`
	Expected      int64   `json:"expected"`
	DeliveredRate float64 `json:"delivered_per_sec"`
	// Requests counts poll answers received in the measured time,
	// RequestRate per second; MessagesPerAnswer is Delivered/Requests.
	Requests          int64   `json:"requests"`
	RequestRate       float64 `json:"requests_per_sec"`
	MessagesPerAnswer float64 `json:"messages_per_answer"`
	// Latency is publish to the arrival of the answer that carried it.
	Latency          LatencySummary `json:"latency"`
	HubCPU           float64        `json:"hub_cpu_seconds"`
	HubCPUPerMillion float64        `json:"hub_cpu_seconds_per_million"`
	Errors           int64          `json:"errors"`
}

type pollAnswer struct {
	Messages []struct {
		Data json.RawMessage `json:"data"`
	} `json:"messages"`
	Gaps   []json.RawMessage `json:"gaps"`
	Cursor string            `json:"cursor"`
}

// RunPollLoad runs the long-polling workload once.
func RunPollLoad(ctx context.Context, cfg PollLoadConfig) (PollLoadResult, error) {
	if cfg.Channel == "" {
		cfg.Channel = "pollbench"
	}
	if cfg.Pollers <= 0 {
		cfg.Pollers = 1000
	}
	if cfg.Rate <= 0 {
		cfg.Rate = 10
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 25 * time.Second
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Warmup <= 0 {
		cfg.Warmup = 2 * time.Second
	}
	if cfg.Size <= 0 {
		cfg.Size = 100
	}
	cfg.Size = max(cfg.Size, 40)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Pollers + 8, MaxIdleConns: cfg.Pollers + 8, DisableCompression: true}
	defer tr.CloseIdleConnections()
	pc := &http.Client{Transport: tr}
	base := cfg.URL + "/v1/poll?channel=" + url.QueryEscape(cfg.Channel) + "&timeout=" + cfg.Timeout.String()

	var winStart, winEnd atomic.Int64
	winStart.Store(1<<63 - 1)
	winEnd.Store(1<<63 - 1)
	var delivered, requests, errs atomic.Int64
	var firstErr atomic.Value
	shards := make([]struct {
		mu sync.Mutex
		l  *Latency
	}, 32)
	for i := range shards {
		shards[i].l = NewLatency()
	}
	pollOnce := func(cursor string) (pollAnswer, error) {
		u := base
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return pollAnswer{}, err
		}
		resp, err := pc.Do(req)
		if err != nil {
			return pollAnswer{}, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return pollAnswer{}, err
		}
		if resp.StatusCode != http.StatusOK {
			return pollAnswer{}, fmt.Errorf("poll: %s: %s", resp.Status, b)
		}
		var a pollAnswer
		err = json.Unmarshal(b, &a)
		return a, err
	}
	// Every poller learns "now" first (timeout=0 answers at once).
	cursors := make([]string, cfg.Pollers)
	{
		sem := make(chan struct{}, 50)
		var wg sync.WaitGroup
		for i := range cursors {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.Replace(base, "&timeout="+cfg.Timeout.String(), "&timeout=0", 1), nil)
				resp, err := pc.Do(req)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				var a pollAnswer
				json.NewDecoder(resp.Body).Decode(&a)
				resp.Body.Close()
				cursors[i] = a.Cursor
			})
		}
		wg.Wait()
		if err, _ := firstErr.Load().(error); err != nil {
			return PollLoadResult{}, fmt.Errorf("first poll: %w", err)
		}
	}
	var pollers sync.WaitGroup
	for i := range cursors {
		sh := &shards[i%len(shards)]
		cursor := cursors[i]
		pollers.Go(func() {
			for ctx.Err() == nil {
				a, err := pollOnce(cursor)
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
					return
				}
				now := time.Now().UnixNano()
				if a.Cursor != "" {
					cursor = a.Cursor
				}
				counted := false
				for _, m := range a.Messages {
					t, ok := stampOf(append([]byte(`"data":`), m.Data...))
					if !ok || t < winStart.Load() || t >= winEnd.Load() {
						continue
					}
					counted = true
					delivered.Add(1)
					sh.mu.Lock()
					sh.l.Record(time.Duration(now - t))
					sh.mu.Unlock()
				}
				if counted || (now >= winStart.Load() && now < winEnd.Load()) {
					requests.Add(1)
				}
			}
		})
	}

	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	metricsURL := cfg.URL + "/metrics"
	var cpu0 float64
	pub := newPacedPublisher(cfg.URL, cfg.Channel, cfg.Size)
	err := pub.run(ctx, cfg.Rate, cfg.Warmup, cfg.Duration, &winStart, &winEnd, func() error {
		m, err := scrapeMetrics(ctx, hc, metricsURL)
		cpu0 = m["process_cpu_seconds_total"]
		return err
	})
	if err != nil {
		return PollLoadResult{}, err
	}
	published := pub.published.Load()
	expected := published * int64(cfg.Pollers)
	drainBy := time.Now().Add(10 * time.Second)
	for delivered.Load() < expected && time.Now().Before(drainBy) {
		time.Sleep(5 * time.Millisecond) // polling for the stragglers
	}
	m, err := scrapeMetrics(ctx, hc, metricsURL)
	if err != nil {
		return PollLoadResult{}, err
	}
	cpu := m["process_cpu_seconds_total"] - cpu0
	cancel()
	pollers.Wait()

	lat := NewLatency()
	for i := range shards {
		lat.Merge(shards[i].l)
	}
	res := PollLoadResult{
		Pollers: cfg.Pollers, Rate: cfg.Rate, Seconds: cfg.Duration.Seconds(),
		Published: published, Delivered: delivered.Load(), Expected: expected,
		DeliveredRate: float64(delivered.Load()) / cfg.Duration.Seconds(),
		Requests:      requests.Load(), RequestRate: float64(requests.Load()) / cfg.Duration.Seconds(),
		Latency: lat.Summary(), HubCPU: cpu, Errors: errs.Load(),
	}
	if res.Requests > 0 {
		res.MessagesPerAnswer = float64(res.Delivered) / float64(res.Requests)
	}
	if res.Delivered > 0 {
		res.HubCPUPerMillion = cpu / float64(res.Delivered) * 1e6
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return res, fmt.Errorf("%d polls failed, the first: %w", res.Errors, err)
	}
	return res, nil
}
