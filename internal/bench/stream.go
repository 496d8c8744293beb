package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The SSE and NDJSON fan-out workloads: Subscribers raw HTTP/1.1
// connections reading /v1/sse or /v1/stream on one channel, and one
// keep-alive publisher POSTing to it at a fixed rate. Readers are lean (a
// line scanner over the chunked body, no full decode) so that the load
// generator leaves the hub as much of the machine as it can.

// streamReader is one reading connection.
type streamReader struct {
	conn net.Conn
	body *bufio.Reader
}

// openStream opens a raw HTTP/1.1 GET of path on the hub at base and reads
// the response head. The body reader yields the de-chunked stream.
func openStream(ctx context.Context, base, path string) (*streamReader, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n\r\n", path, u.Host); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		conn.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return &streamReader{conn: conn, body: bufio.NewReaderSize(resp.Body, 4096)}, nil
}

// openStreams opens n streams of path, at most parallel at once.
func openStreams(ctx context.Context, base, path string, n, parallel int) ([]*streamReader, error) {
	rs := make([]*streamReader, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := range rs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			r, err := openStream(dctx, base, path)
			if err != nil {
				firstErr.CompareAndSwap(nil, fmt.Errorf("stream %d: %w", i, err))
				return
			}
			rs[i] = r
		})
	}
	wg.Wait()
	out := rs[:0]
	for _, r := range rs {
		if r != nil {
			out = append(out, r)
		}
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return out, err
	}
	return out, nil
}

func closeStreams(rs []*streamReader) {
	for _, r := range rs {
		r.conn.Close()
	}
}

// RunStreamFanout runs the SSE or NDJSON fan-out workload once. It returns
// when the measured time is over and the deliveries of its publications
// have arrived (or 10s after that).
func RunStreamFanout(ctx context.Context, cfg FanoutConfig) (FanoutResult, error) {
	cfg = cfg.withDefaults("sse")
	if cfg.Transport != "sse" && cfg.Transport != "stream" {
		return FanoutResult{}, fmt.Errorf("transport %q: want sse or stream", cfg.Transport)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs, err := openStreams(ctx, cfg.URL, "/v1/"+cfg.Transport+"?channel="+url.QueryEscape(cfg.Channel), cfg.Subscribers, cfg.DialParallel)
	defer closeStreams(rs)
	if err != nil {
		return FanoutResult{}, err
	}

	tally := newFanoutTally()
	var readers sync.WaitGroup
	for i, r := range rs {
		readers.Go(func() {
			for {
				line, err := r.body.ReadSlice('\n')
				if err != nil && err != bufio.ErrBufferFull {
					if ctx.Err() == nil {
						tally.closed.Add(1)
						tally.closeErr.CompareAndSwap(nil, err.Error())
					}
					return
				}
				now := time.Now().UnixNano()
				if t, ok := stampOf(line); ok {
					tally.record(i, t, now)
				}
			}
		})
	}

	published, cpu, err := postAndMeasure(ctx, cfg, tally, len(rs))
	cancel()
	closeStreams(rs)
	readers.Wait()
	if err != nil {
		return FanoutResult{}, err
	}
	return tally.result(cfg, len(rs), published, cpu), nil
}

// postAndMeasure publishes cfg's workload by POST (a pacedPublisher), waits
// for the readers' deliveries of the measured publications, and returns
// how many were published in the measured window and the hub's CPU seconds
// over it (from its /metrics).
func postAndMeasure(ctx context.Context, cfg FanoutConfig, tally *fanoutTally, readers int) (published int64, cpu float64, err error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	metricsURL := cfg.URL + "/metrics"
	var cpu0 float64
	pub := newPacedPublisher(cfg.URL, cfg.Channel, cfg.Size)
	err = pub.run(ctx, cfg.Rate, cfg.Warmup, cfg.Duration, &tally.winStart, &tally.winEnd, func() error {
		m, err := scrapeMetrics(ctx, hc, metricsURL)
		cpu0 = m["process_cpu_seconds_total"]
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	published = pub.published.Load()
	tally.drain(published*int64(readers), 10*time.Second)
	m, err := scrapeMetrics(ctx, hc, metricsURL)
	if err != nil {
		return 0, 0, err
	}
	return published, m["process_cpu_seconds_total"] - cpu0, nil
}

// pacedPublisher POSTs stamped publications ({"t":<Unix ns>,"p":"x…"}) at
// a fixed rate, with up to maxInFlight requests at once so that the rate
// holds even when one POST takes longer than 1/rate. It counts the
// publications stamped inside the measured window [winStart, winEnd).
type pacedPublisher struct {
	hc        *http.Client
	url       string
	pad       string
	sem       chan struct{}
	wg        sync.WaitGroup
	published atomic.Int64
	firstErr  atomic.Value
}

const maxInFlight = 16

func newPacedPublisher(base, channel string, size int) *pacedPublisher {
	return &pacedPublisher{
		hc:  &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: maxInFlight}},
		url: base + "/v1/channels/" + url.PathEscape(channel) + "/messages",
		pad: strings.Repeat("x", size-40),
		sem: make(chan struct{}, maxInFlight),
	}
}

// publish starts one POST, waiting while maxInFlight are in flight.
func (p *pacedPublisher) publish(ctx context.Context, winStart, winEnd *atomic.Int64) {
	p.sem <- struct{}{}
	p.wg.Go(func() {
		defer func() { <-p.sem }()
		body := make([]byte, 0, len(p.pad)+48)
		t := time.Now().UnixNano()
		body = append(body, `{"t":`...)
		body = strconv.AppendInt(body, t, 10)
		body = append(body, `,"p":"`...)
		body = append(body, p.pad...)
		body = append(body, `"}`...)
		if err := postOnce(ctx, p.hc, p.url, body); err != nil {
			p.firstErr.CompareAndSwap(nil, err)
			return
		}
		if t >= winStart.Load() && t < winEnd.Load() {
			p.published.Add(1)
		}
	})
}

// wait waits for the POSTs in flight and returns the first error.
func (p *pacedPublisher) wait() error {
	p.wg.Wait()
	p.hc.CloseIdleConnections()
	err, _ := p.firstErr.Load().(error)
	return err
}

// run publishes at rate from now until warmup+duration have passed,
// starting the measured window after warmup (calling atStart first); it
// returns when the last POST is answered.
func (p *pacedPublisher) run(ctx context.Context, rate float64, warmup, duration time.Duration, winStart, winEnd *atomic.Int64, atStart func() error) error {
	var sent int64
	begin := time.Now()
	measureAt := begin.Add(warmup)
	endAt := measureAt.Add(duration)
	measuring := false
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		if !measuring && !now.Before(measureAt) {
			if err := atStart(); err != nil {
				p.wait()
				return err
			}
			winStart.Store(time.Now().UnixNano())
			measuring = true
		}
		if !now.Before(endAt) {
			winEnd.Store(time.Now().UnixNano())
			break
		}
		for due := int64(now.Sub(begin).Seconds() * rate); sent < due; sent++ {
			p.publish(ctx, winStart, winEnd)
		}
		select {
		case <-ctx.Done():
			p.wait()
			return ctx.Err()
		case <-tick.C:
		}
	}
	return p.wait()
}

// postOnce publishes body and checks the 201.
func postOnce(ctx context.Context, hc *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("publish: %s", resp.Status)
	}
	return nil
}

// StreamIdleConfig configures the idle-stream memory workload.
type StreamIdleConfig struct {
	// URL is the hub's base URL. Required.
	URL string
	// Transport is "sse" or "stream". Empty means "sse".
	Transport string
	// Conns is the number of idle streams. Zero means 10000.
	Conns int
	// Channel every stream reads. Empty means "streamidle".
	Channel string
	// Settle is how long the streams stay open and idle before the
	// measurement. Zero means 5s.
	Settle time.Duration
	// DialParallel bounds the connections opened at once. Zero means 50.
	DialParallel int
}

// StreamIdleResult is the hub's memory before and with the idle streams,
// from its /metrics, and the differences per stream.
type StreamIdleResult struct {
	Transport string
	Conns     int
	IdleMemory
}

// RunStreamIdle measures the hub's memory with Conns idle SSE or NDJSON
// streams open against none. The streams are read (heartbeats), as a
// client's would be.
func RunStreamIdle(ctx context.Context, cfg StreamIdleConfig) (StreamIdleResult, error) {
	if cfg.Transport == "" {
		cfg.Transport = "sse"
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 10000
	}
	if cfg.Channel == "" {
		cfg.Channel = "streamidle"
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 5 * time.Second
	}
	if cfg.DialParallel <= 0 {
		cfg.DialParallel = 50
	}
	mem, n, err := measureIdle(ctx, cfg.URL, cfg.Settle, func(ctx context.Context) (int, func(), error) {
		rs, err := openStreams(ctx, cfg.URL, "/v1/"+cfg.Transport+"?channel="+url.QueryEscape(cfg.Channel), cfg.Conns, cfg.DialParallel)
		if err != nil {
			closeStreams(rs)
			return 0, nil, err
		}
		var readers sync.WaitGroup
		for _, r := range rs {
			readers.Go(func() { io.Copy(io.Discard, r.body) })
		}
		return len(rs), func() { closeStreams(rs); readers.Wait() }, nil
	})
	if err != nil {
		return StreamIdleResult{}, err
	}
	return StreamIdleResult{Transport: cfg.Transport, Conns: n, IdleMemory: mem}, nil
}
