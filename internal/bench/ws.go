package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// wsSubscriber is one subscribed connection of the load generator.
type wsSubscriber struct {
	c *websocket.Conn
}

// RunWSFanout runs the fan-out workload once. It returns when the measured
// time is over and the deliveries of its publications have arrived (or 10s
// after that).
func RunWSFanout(ctx context.Context, cfg FanoutConfig) (FanoutResult, error) {
	cfg.Transport = "ws"
	cfg = cfg.withDefaults("ws")
	wsURL := "ws" + strings.TrimPrefix(cfg.URL, "http") + "/v1/ws"
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wire WireCount
	subs, err := dialSubscribers(ctx, wsURL, cfg.Channel, cfg.Subscribers, cfg.DialParallel, cfg.Compression, &wire)
	defer func() {
		for _, s := range subs {
			s.c.CloseNow()
		}
	}()
	if err != nil {
		return FanoutResult{}, err
	}

	tally := newFanoutTally()
	var readers sync.WaitGroup
	for i, s := range subs {
		readers.Go(func() {
			buf := make([]byte, 0, 2*cfg.Size+256)
			for {
				// No deadline on reads (a ctx with one costs a timer per
				// message); the run ends them by closing the connection.
				_, r, err := s.c.Reader(context.Background())
				if err != nil {
					if ctx.Err() == nil {
						tally.closed.Add(1)
						tally.closeErr.CompareAndSwap(nil, err.Error())
					}
					return
				}
				buf, err = readAll(r, buf[:0])
				if err != nil {
					tally.closed.Add(1)
					tally.closeErr.CompareAndSwap(nil, err.Error())
					return
				}
				now := time.Now().UnixNano()
				if t, ok := stampOf(buf); ok {
					tally.record(i, t, now)
				}
			}
		})
	}

	if cfg.PublishHTTP {
		// Published as the stream benchmarks publish (POSTs), so that
		// transports compare on the same publishing cost.
		published, cpu, err := postAndMeasure(ctx, cfg, tally, len(subs))
		cancel()
		for _, s := range subs {
			s.c.CloseNow()
		}
		readers.Wait()
		if err != nil {
			return FanoutResult{}, err
		}
		return tally.result(cfg, len(subs), published, cpu), nil
	}

	pub, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		cancel()
		readers.Wait()
		return FanoutResult{}, fmt.Errorf("dial publisher: %w", err)
	}
	defer pub.CloseNow()
	var pubErrs atomic.Int64
	var firstPubErr atomic.Value
	var pubReader sync.WaitGroup
	pubReader.Go(func() {
		for {
			_, b, err := pub.Read(context.Background())
			if err != nil {
				return
			}
			if bytes.Contains(b, []byte(`"type":"error"`)) {
				pubErrs.Add(1)
				firstPubErr.CompareAndSwap(nil, string(b))
			}
		}
	})

	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	metricsURL := cfg.URL + "/metrics"

	pad := recordPad(cfg.Size - 40)
	var wire0 int64
	var sent, published int64
	begin := time.Now()
	measureAt := begin.Add(cfg.Warmup)
	endAt := measureAt.Add(cfg.Duration)
	var cpu0 float64
	measuring := false
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	frame := make([]byte, 0, cfg.Size+128)
	for {
		now := time.Now()
		if !measuring && !now.Before(measureAt) {
			m, err := scrapeMetrics(ctx, hc, metricsURL)
			if err != nil {
				return FanoutResult{}, err
			}
			cpu0 = m["process_cpu_seconds_total"]
			wire0 = wire.Read.Load()
			tally.winStart.Store(time.Now().UnixNano())
			measuring = true
		}
		if !now.Before(endAt) {
			tally.winEnd.Store(time.Now().UnixNano())
			break
		}
		due := int64(now.Sub(begin).Seconds() * cfg.Rate)
		for ; sent < due; sent++ {
			frame = frame[:0]
			frame = append(frame, `{"id":`...)
			frame = strconv.AppendInt(frame, sent, 10)
			frame = append(frame, `,"type":"publish","channel":"`...)
			frame = append(frame, cfg.Channel...)
			frame = append(frame, `","data":{"t":`...)
			frame = strconv.AppendInt(frame, time.Now().UnixNano(), 10)
			frame = append(frame, `,"p":"`...)
			frame = append(frame, pad...)
			frame = append(frame, `"}}`...)
			if err := pub.Write(context.Background(), websocket.MessageText, frame); err != nil {
				return FanoutResult{}, fmt.Errorf("publish: %w", err)
			}
			if measuring {
				published++
			}
		}
		select {
		case <-ctx.Done():
			return FanoutResult{}, ctx.Err()
		case <-tick.C:
		}
	}
	// Let the deliveries of the measured publications arrive.
	tally.drain(published*int64(cfg.Subscribers), 10*time.Second)
	m, err := scrapeMetrics(ctx, hc, metricsURL)
	if err != nil {
		return FanoutResult{}, err
	}
	cpu := m["process_cpu_seconds_total"] - cpu0
	wireBytes := wire.Read.Load() - wire0
	cancel()
	for _, s := range subs {
		s.c.CloseNow()
	}
	pub.CloseNow()
	readers.Wait()
	pubReader.Wait()

	res := tally.result(cfg, cfg.Subscribers, published, cpu)
	if res.Delivered > 0 {
		res.WireBytesPerDelivery = float64(wireBytes) / float64(res.Delivered)
	}
	if n := pubErrs.Load(); n > 0 {
		return res, fmt.Errorf("%d publishes failed, the first: %v", n, firstPubErr.Load())
	}
	return res, nil
}

// dialSubscribers opens n connections to wsURL subscribed to channel, at
// most parallel at once, offering permessage-deflate if compress; what
// they read off TCP is added to wire (if not nil).
func dialSubscribers(ctx context.Context, wsURL, channel string, n, parallel int, compress bool, wire *WireCount) ([]*wsSubscriber, error) {
	opts := &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled}
	if compress {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	if wire != nil {
		opts.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: (&CountingDialer{Count: wire}).Dial}}
	}
	subs := make([]*wsSubscriber, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	sub := []byte(`{"id":1,"type":"subscribe","channel":"` + channel + `"}`)
	for i := range subs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(dctx, wsURL, opts)
			if err != nil {
				firstErr.CompareAndSwap(nil, fmt.Errorf("dial subscriber %d: %w", i, err))
				return
			}
			c.SetReadLimit(1 << 20)
			subs[i] = &wsSubscriber{c: c}
			if err := c.Write(dctx, websocket.MessageText, sub); err != nil {
				firstErr.CompareAndSwap(nil, fmt.Errorf("subscribe %d: %w", i, err))
				return
			}
			_, b, err := c.Read(dctx)
			if err != nil || !bytes.Contains(b, []byte(`"type":"ok"`)) {
				firstErr.CompareAndSwap(nil, fmt.Errorf("subscribe %d: %q %v", i, b, err))
			}
		})
	}
	wg.Wait()
	out := subs[:0]
	for _, s := range subs {
		if s != nil {
			out = append(out, s)
		}
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return out, err
	}
	return out, nil
}

// recordPad is n bytes of record-like text (ids, symbols, prices,
// quantities) to fill a publication to its size: compressible about as
// much as typical JSON payloads are, unlike a run of one letter. It holds
// no character a JSON string would have to escape.
func recordPad(n int) string {
	var b strings.Builder
	sides := []string{"buy", "sell"}
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "{id:%d,sym:S%03d,px:%d.%02d,qty:%d,side:%s},", 1000+i, (i*37)%200, 90+(i*53)%40, (i*71)%100, 1+(i*29)%500, sides[i%2])
	}
	return b.String()[:n]
}

// readAll reads r to its end into buf.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// stampOf finds the publish time the workload put in a message's data.
func stampOf(b []byte) (int64, bool) {
	i := bytes.Index(b, []byte(`"data":{"t":`))
	if i < 0 {
		return 0, false
	}
	b = b[i+len(`"data":{"t":`):]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	t, err := strconv.ParseInt(string(b[:j]), 10, 64)
	return t, err == nil
}

// scrapeMetrics reads the unlabelled samples of a hub's /metrics (parsed
// with expfmt, see HubMetrics) and insists on process_cpu_seconds_total.
func scrapeMetrics(ctx context.Context, c *http.Client, url string) (map[string]float64, error) {
	out, err := HubMetrics(ctx, c, url)
	if err != nil {
		return nil, err
	}
	if _, ok := out["process_cpu_seconds_total"]; !ok {
		return nil, errors.New("scrape " + url + ": no process_cpu_seconds_total (not a hub on Linux?)")
	}
	return out, nil
}

// WSIdleConfig configures the idle-connection memory workload.
type WSIdleConfig struct {
	// URL is the hub's base URL. Required.
	URL string
	// Conns is the number of connections. Zero means 10000.
	Conns int
	// Channel every connection subscribes to. Empty means "wsidle".
	Channel string
	// Settle is how long to wait, connections open and idle, before
	// measuring. Zero means 5s. Over 2 minutes, the hub's runtime has
	// run a forced GC by then, so garbage from the connection setup is
	// not counted as live heap.
	Settle time.Duration
	// DialParallel bounds the connections opened at once. Zero means 50.
	DialParallel int
}

// WSIdleResult is the hub's memory before and with the idle connections,
// from its /metrics, and the differences per connection.
type WSIdleResult struct {
	Conns int `json:"conns"`
	IdleMemory
}

// IdleMemory is a hub's memory before and with a number of idle
// connections, and the difference per connection.
type IdleMemory struct {
	// Before and With are the hub's figures without and with the
	// connections.
	Before, With HubMemory
	// RSSPerConn, HeapPerConn (in use), LivePerConn (heap allocated)
	// and StackPerConn are the differences over the connections, in KiB.
	RSSPerConn, HeapPerConn, LivePerConn, StackPerConn float64
	// GoroutinesPerConn is the difference in goroutines over them.
	GoroutinesPerConn float64
}

// idleMemory compares two scrapes of a hub's /metrics, without and with
// conns idle connections.
func idleMemory(before, with map[string]float64, conns int) IdleMemory {
	m := IdleMemory{Before: memoryOf(before), With: memoryOf(with)}
	n := float64(conns)
	m.RSSPerConn = (m.With.RSS - m.Before.RSS) / n / 1024
	m.HeapPerConn = (m.With.HeapInuse - m.Before.HeapInuse) / n / 1024
	m.StackPerConn = (m.With.StackInuse - m.Before.StackInuse) / n / 1024
	m.LivePerConn = (m.With.HeapAlloc - m.Before.HeapAlloc) / n / 1024
	m.GoroutinesPerConn = (m.With.Goroutines - m.Before.Goroutines) / n
	return m
}

// HubMemory is a hub's memory at one moment, from its /metrics.
type HubMemory struct {
	RSS, HeapInuse, HeapAlloc, StackInuse, Goroutines, GCs float64
}

func memoryOf(m map[string]float64) HubMemory {
	return HubMemory{
		RSS: m["process_resident_memory_bytes"], HeapInuse: m["go_memstats_heap_inuse_bytes"],
		HeapAlloc: m["go_memstats_heap_alloc_bytes"], StackInuse: m["go_memstats_stack_inuse_bytes"],
		Goroutines: m["go_goroutines"], GCs: m["go_gc_duration_seconds_count"],
	}
}

// RunWSIdle measures the hub's memory with Conns idle subscribed WebSocket
// connections against none.
func RunWSIdle(ctx context.Context, cfg WSIdleConfig) (WSIdleResult, error) {
	if cfg.Conns <= 0 {
		cfg.Conns = 10000
	}
	if cfg.Channel == "" {
		cfg.Channel = "wsidle"
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 5 * time.Second
	}
	if cfg.DialParallel <= 0 {
		cfg.DialParallel = 50
	}
	wsURL := "ws" + strings.TrimPrefix(cfg.URL, "http") + "/v1/ws"
	mem, n, err := measureIdle(ctx, cfg.URL, cfg.Settle, func(ctx context.Context) (int, func(), error) {
		subs, err := dialSubscribers(ctx, wsURL, cfg.Channel, cfg.Conns, cfg.DialParallel, false, nil)
		closeAll := func() {
			for _, s := range subs {
				s.c.CloseNow()
			}
		}
		if err != nil {
			closeAll()
			return 0, nil, err
		}
		// Keep reading, so pings are answered, as an idle browser would.
		var readers sync.WaitGroup
		for _, s := range subs {
			readers.Go(func() {
				for {
					if _, _, err := s.c.Read(ctx); err != nil {
						return
					}
				}
			})
		}
		return len(subs), func() { closeAll(); readers.Wait() }, nil
	})
	if err != nil {
		return WSIdleResult{}, err
	}
	return WSIdleResult{Conns: n, IdleMemory: mem}, nil
}

// measureIdle measures a hub's memory without and with idle connections:
// it scrapes hubURL's /metrics, opens the connections (open returns how
// many, and how to close them; on an error it has closed them), waits
// settle (or for ctx), scrapes again and closes them.
func measureIdle(ctx context.Context, hubURL string, settle time.Duration, open func(ctx context.Context) (int, func(), error)) (IdleMemory, int, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	metricsURL := hubURL + "/metrics"
	before, err := scrapeMetrics(ctx, hc, metricsURL)
	if err != nil {
		return IdleMemory{}, 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n, closeAll, err := open(ctx)
	if err != nil {
		return IdleMemory{}, 0, err
	}
	select {
	case <-ctx.Done():
	case <-time.After(settle):
	}
	with, err := scrapeMetrics(ctx, hc, metricsURL)
	cancel()
	closeAll()
	if err != nil {
		return IdleMemory{}, 0, err
	}
	return idleMemory(before, with, n), n, nil
}
