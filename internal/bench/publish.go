package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// PublishConfig configures one run of the HTTP publish workload. The zero
// value of each field but URL is usable.
type PublishConfig struct {
	// URL is the hub's base URL, http://127.0.0.1:8080 say. Required.
	URL string
	// Name names the run in the report. Empty means URL.
	Name string
	// Channel is the channel published to. Empty means "bench".
	Channel string
	// Publishers is the number of concurrent publishers, each with its own
	// keep-alive connection and one request in flight. Zero means 8.
	Publishers int
	// Duration is the measured time. Zero means 10s. The run ends when it
	// is over, or earlier once Count publishes were measured.
	Duration time.Duration
	// Warmup is run before the measured time and not measured: it opens
	// the connections and lets both sides reach a steady state. Zero means
	// none.
	Warmup time.Duration
	// Count bounds the measured publishes, all publishers together. Zero
	// means no bound but Duration.
	Count int64
	// Data is the request body, a JSON value. Nil means a 64-byte object.
	Data []byte
	// Token, if set, is sent as "Authorization: Bearer <Token>".
	Token string
	// Timeout bounds one request. Zero means 5s.
	Timeout time.Duration
	// Client picks the HTTP client: ClientConn (the default) or
	// ClientNetHTTP.
	Client string
	// TLS configures the connections to an https:// URL (ClientNetHTTP
	// only): RootCAs for a hub with a private CA. Nil means the system
	// defaults. The publishers stay on HTTP/1.1, one connection each.
	TLS *tls.Config
}

// The HTTP clients a publish workload can use. Both keep one connection
// per publisher alive and have one request in flight on it.
const (
	// ClientConn writes a pre-encoded request on its own connection and
	// reads the answer with http.ReadResponse: no per-request goroutine
	// hand-offs, so the load generator takes less of the CPU it shares
	// with the target. http:// only.
	ClientConn = "conn"
	// ClientNetHTTP is net/http's Client and Transport, as a Go
	// application would publish.
	ClientNetHTTP = "net/http"
)

// DefaultPublishData is the body published when PublishConfig.Data is nil:
// a small chat-like message, 64 bytes.
var DefaultPublishData = []byte(`{"user":"bench","text":"the quick brown fox jumps over the dog"}`)

func (c PublishConfig) withDefaults() PublishConfig {
	if c.Name == "" {
		c.Name = c.URL
	}
	if c.Channel == "" {
		c.Channel = "bench"
	}
	if c.Publishers <= 0 {
		c.Publishers = 8
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Data == nil {
		c.Data = DefaultPublishData
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Client == "" {
		c.Client = ClientConn
	}
	return c
}

// RunPublish runs cfg.Publishers publishers that POST cfg.Data to
// /v1/channels/{cfg.Channel}/messages of cfg.URL over keep-alive
// connections, as fast as the answers come back, and measures publishes per
// second and the latency of each (request written to answer read). A
// publish succeeds when the answer is 201. RunPublish returns when the run
// is over or ctx is done; an error means the run could not start.
func RunPublish(ctx context.Context, cfg PublishConfig) (Run, error) {
	cfg = cfg.withDefaults()
	target, err := publishURL(cfg.URL, cfg.Channel)
	if err != nil {
		return Run{}, err
	}
	switch {
	case cfg.Client != ClientConn && cfg.Client != ClientNetHTTP:
		return Run{}, fmt.Errorf("client %q: want %s or %s", cfg.Client, ClientConn, ClientNetHTTP)
	case cfg.Client == ClientConn && !strings.HasPrefix(target, "http://"):
		return Run{}, fmt.Errorf("client %s speaks http:// only; use %s for %s", ClientConn, ClientNetHTTP, cfg.URL)
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		MaxIdleConns:        cfg.Publishers,
		MaxIdleConnsPerHost: cfg.Publishers,
		MaxConnsPerHost:     cfg.Publishers,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSClientConfig:     cfg.TLS.Clone(),
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: cfg.Timeout}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	deadline := measureFrom.Add(cfg.Duration)
	run := Run{Name: cfg.Name, Workload: "publish", URL: cfg.URL, Clients: cfg.Publishers, Client: cfg.Client}
	// CPU used by the target and by this process over the measured time:
	// sampled when it begins and once every publisher is done.
	metricsURL := strings.TrimSuffix(cfg.URL, "/") + "/metrics"
	scraper := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg.TLS.Clone()}}
	defer scraper.CloseIdleConnections()
	type cpuSample struct {
		target, self time.Duration
		targetOK     bool
	}
	sample := func() cpuSample {
		t, ok := scrapeCPU(ctx, scraper, metricsURL)
		return cpuSample{target: t, targetOK: ok, self: processCPU()}
	}
	before := make(chan cpuSample, 1)
	go func() {
		select {
		case <-time.After(time.Until(measureFrom)):
		case <-ctx.Done():
		}
		before <- sample()
	}()
	pubs := make([]*publisher, cfg.Publishers)
	for i := range pubs {
		pubs[i] = &publisher{cfg: cfg, client: client, url: target, lat: NewLatency()}
		if cfg.Client == ClientConn {
			pubs[i].conn = newConnPublisher(cfg, target)
			defer pubs[i].conn.close()
		}
	}
	total, lastEnd := runPublishers(ctx, pubs, measureFrom, deadline, &run)
	after, first := sample(), <-before
	if run.Ops > 0 {
		if first.targetOK && after.targetOK {
			run.TargetCPU = round1(float64(after.target-first.target) / 1e3 / float64(run.Ops))
		}
		if first.self > 0 {
			run.ClientCPU = round1(float64(after.self-first.self) / 1e3 / float64(run.Ops))
		}
	}
	if lastEnd.After(measureFrom) {
		run.Seconds = lastEnd.Sub(measureFrom).Seconds()
	}
	if run.Seconds > 0 {
		run.Rate = float64(run.Ops) / run.Seconds
	}
	run.Latency = total.Summary()
	run.Seconds = float64(int64(run.Seconds*1000+0.5)) / 1000
	run.Rate = float64(int64(run.Rate + 0.5))
	return run, nil
}

// publishURL returns base's /v1/channels/{channel}/messages.
func publishURL(base, channel string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("hub URL %q: want http://host:port", base)
	}
	if !msg.ValidChannel(channel) {
		return "", fmt.Errorf("channel %q: 1-128 bytes of A-Z a-z 0-9 _ . : @ -", channel)
	}
	return strings.TrimSuffix(u.String(), "/") + "/v1/channels/" + channel + "/messages", nil
}

// publisher is one connection's worth of load: one request in flight at a
// time, its own histogram, counters read once it is done.
type publisher struct {
	cfg    PublishConfig
	client *http.Client
	conn   *connPublisher // nil: use client
	url    string
	lat    *Latency

	ops, errors int64
	firstErr    error
	lastEnd     time.Time
}

// loop publishes until deadline, ctx is done, or the tickets for Count run
// out. Only publishes that begin at or after measureFrom are measured.
func (p *publisher) loop(ctx context.Context, measureFrom, deadline time.Time, tickets *atomic.Int64) {
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(deadline) {
			return
		}
		measured := !t0.Before(measureFrom)
		if measured && p.cfg.Count > 0 && tickets.Add(1) > p.cfg.Count {
			return
		}
		err := p.publish(ctx)
		end := time.Now()
		if !measured {
			continue
		}
		p.lastEnd = end
		if err == nil {
			p.ops++
			p.lat.Record(end.Sub(t0))
			continue
		}
		if ctx.Err() != nil {
			return // stopped from outside: not the target's failure
		}
		p.errors++
		if p.firstErr == nil {
			p.firstErr = err
		}
		// Don't spin on a target that refuses: a failed publish costs a
		// little wait.
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// publish makes one publish request and reads the whole answer, so the
// connection is reused.
func (p *publisher) publish(ctx context.Context) error {
	if p.conn != nil {
		return p.conn.publish(ctx)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(p.cfg.Data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return fmt.Errorf("POST %s: %s: %s", p.url, resp.Status, bytes.TrimSpace(body))
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return fmt.Errorf("POST %s: read answer: %w", p.url, err)
	}
	return nil
}

// runPublishers runs every publisher until deadline, counting from
// measureFrom, and adds their counts and first error to run. It returns
// their latencies merged and when the last measured publish ended.
func runPublishers(ctx context.Context, pubs []*publisher, measureFrom, deadline time.Time, run *Run) (*Latency, time.Time) {
	var (
		tickets atomic.Int64 // measured publishes begun, for Count
		wg      sync.WaitGroup
		mu      sync.Mutex // guards total, run, lastEnd
		total   = NewLatency()
		lastEnd time.Time
	)
	for _, p := range pubs {
		wg.Go(func() {
			p.loop(ctx, measureFrom, deadline, &tickets)
			mu.Lock()
			defer mu.Unlock()
			total.Merge(p.lat)
			run.Ops += p.ops
			run.Errors += p.errors
			if run.FirstError == "" && p.firstErr != nil {
				run.FirstError = p.firstErr.Error()
			}
			if p.lastEnd.After(lastEnd) {
				lastEnd = p.lastEnd
			}
		})
	}
	wg.Wait()
	return total, lastEnd
}
