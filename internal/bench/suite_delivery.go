package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/msg"
)

// This file runs one delivery measurement: readers of one transport on a
// fresh channel, a paced publisher POSTing stamped messages, and the
// counting dialer under the readers. The four push and long-poll
// transports are read with the public client package, the fifth (plain
// polling of the history endpoint) with net/http and msg.History.

// deliverySpec is one delivery measurement to make.
type deliverySpec struct {
	hub          HubInfo
	transport    string // ws, sse, stream, poll, history
	keepAlive    bool
	pollInterval time.Duration // history only
	subscribers  int
	rate         float64
	size         int
	warmup       time.Duration
	duration     time.Duration
	proxy        string // "" for none
	// readyTimeout bounds the wait for the readers to subscribe; zero
	// means 10s.
	readyTimeout time.Duration
}

// deliveryRound is what one delivery measurement counted.
type deliveryRound struct {
	published, delivered, expected int64
	latency                        *Latency
	wire                           WireTotals
	hubCPU, clientCPU              time.Duration
	hubCPUKnown                    bool
	wall                           time.Duration
	closed                         int64
}

var channelSeq atomic.Int64

// freshChannel returns a channel name nobody used yet in this process or,
// by its time stamp, on this hub.
func freshChannel(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano()%1e12, channelSeq.Add(1))
}

// clientOptions returns the client options of one reader of spec.
func (s deliverySpec) clientOptions(dial func(context.Context, string, string) (net.Conn, error)) *client.DialOptions {
	o := &client.DialOptions{
		Transport: client.Transport(s.transport), Dial: dial, Proxy: "direct",
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second,
	}
	if s.proxy != "" {
		o.Proxy = s.proxy
	}
	if !s.keepAlive && s.transport != "ws" {
		// net/http honours a request's Connection: close (Request.wantsClose):
		// the connection is closed after the response, the next request
		// dials anew.
		o.Header = http.Header{"Connection": {"close"}}
	}
	return o
}

// runDelivery makes one delivery measurement.
func runDelivery(ctx context.Context, s deliverySpec) (deliveryRound, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	channel := freshChannel("bench_" + s.transport)
	dialer := NewCountingDialer()
	tally := newFanoutTally()
	var readers sync.WaitGroup
	var closers []func()
	defer func() {
		cancel()
		for _, c := range closers {
			c()
		}
		readers.Wait()
	}()

	if s.transport == "history" {
		for i := range s.subscribers {
			// A client each, as each poller is a browser of its own: its
			// polls follow one another on its one kept-alive connection.
			hc := historyClient(dialer, s.keepAlive, s.proxy)
			closers = append(closers, hc.CloseIdleConnections)
			p := &historyPoller{hc: hc, base: s.hub.URL, channel: channel, interval: s.pollInterval}
			readers.Go(func() { p.run(ctx, i, tally) })
		}
	} else {
		// Each reader subscribes on its own goroutine, and the run waits
		// for them at most readyWait: through a proxy that buffers, a
		// stream's opening bytes arrive only with the messages after
		// them (the hub has the subscription once the request reached
		// it), and through one that refuses, never.
		ready := make(chan struct{}, s.subscribers)
		var firstErr atomic.Value
		for i := range s.subscribers {
			c, err := client.Dial(ctx, s.hub.URL, s.clientOptions(dialer.Dial))
			if err != nil {
				return deliveryRound{}, fmt.Errorf("dial reader %d: %w", i, err)
			}
			closers = append(closers, func() { c.Close() })
			readers.Go(func() {
				sub, err := c.Subscribe(ctx, []string{channel}, nil)
				if err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("subscribe reader %d: %w", i, err))
					return
				}
				ready <- struct{}{}
				readSubscription(ctx, sub, i, tally)
			})
		}
		wait := time.NewTimer(s.readyWait())
		for n := 0; n < s.subscribers; n++ {
			select {
			case <-ready:
				continue
			case <-wait.C:
			case <-ctx.Done():
			}
			break
		}
		wait.Stop()
		if err, _ := firstErr.Load().(error); err != nil && ctx.Err() == nil {
			return deliveryRound{}, err
		}
	}

	probe := newHubProbe(s.hub)
	var w0 WireTotals
	var hub0, cl0 time.Duration
	var t0 time.Time
	var known bool
	pub := newPacedPublisher(s.hub.URL, channel, s.size)
	err := pub.run(ctx, s.rate, s.warmup, s.duration, &tally.winStart, &tally.winEnd, func() error {
		w0 = dialer.Count.Totals()
		hub0, known = probe.cpu(ctx)
		cl0 = processCPU()
		t0 = time.Now()
		return nil
	})
	if err != nil {
		return deliveryRound{}, err
	}
	published := pub.published.Load()
	expected := published * int64(s.subscribers)
	tally.drain(expected, drainFor(s))
	wall := time.Since(t0)
	w1 := dialer.Count.Totals()
	hub1, known1 := probe.cpu(ctx)
	cl1 := processCPU()
	// The readers are still running (a straggler may yet arrive, outside
	// the window): merge each shard under its lock.
	lat := NewLatency()
	for i := range tally.shards {
		sh := &tally.shards[i]
		sh.mu.Lock()
		lat.Merge(sh.l)
		sh.mu.Unlock()
	}
	return deliveryRound{
		published: published, delivered: tally.delivered.Load(), expected: expected,
		latency: lat, wire: w1.Sub(w0), hubCPU: hub1 - hub0, hubCPUKnown: known && known1,
		clientCPU: cl1 - cl0, wall: wall, closed: tally.closed.Load(),
	}, nil
}

// readyWait bounds the wait for the readers' subscriptions. Zero
// readyTimeout means 10s.
func (s deliverySpec) readyWait() time.Duration {
	if s.readyTimeout > 0 {
		return s.readyTimeout
	}
	return 10 * time.Second
}

// drainFor is how long to wait for the last deliveries: two poll
// intervals more for history, and up to 2s (1s in a quick run) for
// everyone; messages a proxy holds back may never come.
func drainFor(s deliverySpec) time.Duration {
	return min(2*time.Second, s.readyWait()/2) + 2*s.pollInterval
}

// readSubscription records every stamped message sub delivers.
func readSubscription(ctx context.Context, sub *client.Subscription, i int, tally *fanoutTally) {
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				tally.closed.Add(1)
			}
			return
		}
		now := time.Now().UnixNano()
		if ev.Message != nil {
			if t, ok := stampOfData(ev.Message.Data); ok {
				tally.record(i, t, now)
			}
		}
	}
}

// stampOfData reads the publish stamp t of a {"t":…,"p":…} payload.
func stampOfData(data json.RawMessage) (int64, bool) {
	const head = `{"t":`
	if len(data) < len(head) || string(data[:len(head)]) != head {
		return 0, false
	}
	b := data[len(head):]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	t, err := strconv.ParseInt(string(b[:j]), 10, 64)
	return t, err == nil
}

// historyClient is the HTTP client of the history pollers: counted, with
// keep-alive on or off (DisableKeepAlives: one connection per request).
func historyClient(d *CountingDialer, keepAlive bool, proxy string) *http.Client {
	tr := &http.Transport{
		DialContext: d.Dial, DisableKeepAlives: !keepAlive,
		MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second,
	}
	if proxy != "" {
		if u, err := url.Parse(proxy); err == nil {
			tr.Proxy = http.ProxyURL(u)
		}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// historyPoller is one plain poller: every interval it asks the history
// endpoint for what follows the last offset it saw, with If-None-Match
// the last page's ETag, so an unchanged page costs a 304.
type historyPoller struct {
	hc       *http.Client
	base     string
	channel  string
	interval time.Duration
	after    uint64
	etag     string
	// Counts of answers, for tests.
	ok, notModified int64
}

func (p *historyPoller) run(ctx context.Context, i int, tally *fanoutTally) {
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		if err := p.poll(ctx, i, tally); err != nil && ctx.Err() == nil {
			tally.closed.Add(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// poll makes one request and records what it brought.
func (p *historyPoller) poll(ctx context.Context, i int, tally *fanoutTally) error {
	h, status, etag, err := readHistory(ctx, p.hc, p.base, p.channel, p.after, p.etag)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	if status == http.StatusNotModified {
		p.notModified++
		return nil
	}
	p.ok++
	p.etag = etag
	for _, m := range h.Messages {
		if t, ok := stampOfData(m.Data); ok && tally != nil {
			tally.record(i, t, now)
		}
	}
	p.after = h.Next
	return nil
}

// readHistory GETs one history page after offset after, sending etag as
// If-None-Match when set. On a 304 h is nil.
func readHistory(ctx context.Context, hc *http.Client, base, channel string, after uint64, etag string) (h *msg.History, status int, newETag string, err error) {
	u := base + "/v1/channels/" + url.PathEscape(channel) + "/messages?after=" + strconv.FormatUint(after, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, "", err
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, 0, "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		io.Copy(io.Discard, resp.Body)
		return nil, resp.StatusCode, etag, nil
	case http.StatusOK:
	default:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, resp.StatusCode, "", fmt.Errorf("history: %s", resp.Status)
	}
	h = new(msg.History)
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(h); err != nil {
		return nil, resp.StatusCode, "", fmt.Errorf("history: %w", err)
	}
	return h, resp.StatusCode, resp.Header.Get("ETag"), nil
}
