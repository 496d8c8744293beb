package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/msg"
)

// This file holds the suite's smaller measurements: a cold client's first
// message, client→server latency while receiving, the cost of reading
// cacheable data again, and memory per idle subscriber.

// publishOne POSTs one stamped message to channel and returns where it
// landed.
func publishOne(ctx context.Context, base, channel string, size int) (msg.Published, error) {
	c, err := client.Dial(ctx, base, &client.DialOptions{Transport: client.SSE, Proxy: "direct"})
	if err != nil {
		return msg.Published{}, err
	}
	defer c.Close()
	return c.Publish(ctx, channel, stampedData(time.Now().UnixNano(), size))
}

// stampedData is a {"t":<ns>,"p":"x…"} payload of about size bytes.
func stampedData(t int64, size int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"t":%d,"p":"%s"}`, t, strings.Repeat("x", max(size-40, 0))))
}

// measureCold measures, samples times, a new client of transport reaching
// its first message: one published beforehand and asked for by cursor, so
// the figure is connect + request (+ upgrade) + subscribe + first frame.
func measureCold(ctx context.Context, hub HubInfo, transport string, samples, size int, proxy string, wait time.Duration) ColdStart {
	res := ColdStart{Transport: transport}
	lat := NewLatency()
	for range samples {
		channel := freshChannel("cold_" + transport)
		p, err := publishOne(ctx, hub.URL, channel, size)
		if err != nil {
			res.Error = err.Error()
			break
		}
		d, err := coldOnce(ctx, hub.URL, transport, channel, p, proxy, wait)
		if err != nil {
			res.Error = err.Error()
			break
		}
		lat.Record(d)
	}
	res.Samples = int(lat.Count())
	res.Latency = lat.Summary()
	return res
}

func coldOnce(ctx context.Context, base, transport, channel string, p msg.Published, proxy string, wait time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	start := time.Now()
	if transport == "history" {
		hc := historyClient(NewCountingDialer(), true, proxy)
		defer hc.CloseIdleConnections()
		h, _, _, err := readHistory(ctx, hc, base, channel, p.Offset-1, "")
		if err != nil {
			return 0, err
		}
		if len(h.Messages) == 0 {
			return 0, fmt.Errorf("history: no message after %d", p.Offset-1)
		}
		return time.Since(start), nil
	}
	o := &client.DialOptions{Transport: client.Transport(transport), Proxy: "direct"}
	if proxy != "" {
		o.Proxy = proxy
	}
	c, err := client.Dial(ctx, base, o)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, []string{channel}, &client.SubscribeOptions{
		Cursor: msg.Cursor{channel: {Epoch: p.Epoch, Offset: p.Offset - 1}},
	})
	if err != nil {
		return 0, err
	}
	defer sub.Close()
	if _, err := sub.Next(ctx); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// measureUpstream measures client→server latency while the same client
// receives a stream published at rate: a publish on the open WebSocket,
// and a POST beside an SSE subscription with keep-alive on and off.
func measureUpstream(ctx context.Context, hub HubInfo, samples int, rate float64, size int, proxy string, wait time.Duration) []Upstream {
	paths := []struct {
		path      string
		transport client.Transport
		keepAlive bool
	}{
		{"ws", client.WebSocket, true},
		{"post", client.SSE, true},
		{"post-new-conn", client.SSE, false},
	}
	var out []Upstream
	for _, p := range paths {
		out = append(out, upstreamOnce(ctx, hub, p.path, p.transport, p.keepAlive, samples, rate, size, proxy, wait))
	}
	return out
}

func upstreamOnce(ctx context.Context, hub HubInfo, path string, tr client.Transport, keepAlive bool, samples int, rate float64, size int, proxy string, wait time.Duration) Upstream {
	res := Upstream{Path: path}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	inbound := freshChannel("up_in")
	outbound := freshChannel("up_out")
	dialer := NewCountingDialer()
	spec := deliverySpec{transport: string(tr), keepAlive: keepAlive, proxy: proxy}
	c, err := client.Dial(ctx, hub.URL, spec.clientOptions(dialer.Dial))
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer c.Close()
	sctx, scancel := context.WithTimeout(ctx, wait)
	sub, err := c.Subscribe(sctx, []string{inbound}, nil)
	scancel()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		for {
			if _, err := sub.Next(ctx); err != nil {
				return
			}
		}
	})
	// The stream the client receives meanwhile.
	wg.Go(func() {
		pub := newPacedPublisher(hub.URL, inbound, size)
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		window := newFanoutTally() // never opened: nothing is counted
		for {
			select {
			case <-ctx.Done():
				pub.wait()
				return
			case <-tick.C:
				pub.publish(ctx, &window.winStart, &window.winEnd)
			}
		}
	})
	lat := NewLatency()
	// One unmeasured publish opens what it needs (the WebSocket's command
	// path; the POST's first connection).
	if _, err := c.Publish(ctx, outbound, stampedData(0, size)); err != nil {
		res.Error = err.Error()
		return res
	}
	w0 := dialer.Count.Totals()
	for range samples {
		t := time.Now()
		if _, err := c.Publish(ctx, outbound, stampedData(t.UnixNano(), size)); err != nil {
			res.Error = err.Error()
			break
		}
		lat.Record(time.Since(t))
	}
	w := dialer.Count.Totals().Sub(w0)
	n := float64(lat.Count())
	res.Samples = int(lat.Count())
	res.Latency = lat.Summary()
	if n > 0 {
		res.UpBytesPerOp = float64(w.Written) / n
		res.HandshakesPer1000 = float64(w.Dials) / n * 1000
		res.RequestsPer1000 = float64(w.Requests) / n * 1000
	}
	return res
}

// measureCacheable reads one full history page (limit messages, so the
// hub marks it immutable) repeatedly: over HTTP the first time (200),
// then revalidating with If-None-Match (304), and over an open WebSocket
// with the history command, each time.
func measureCacheable(ctx context.Context, hub HubInfo, samples, size int, proxy string, wait time.Duration) []CacheRead {
	const pageSize = 100
	channel := freshChannel("cache")
	c, err := client.Dial(ctx, hub.URL, &client.DialOptions{Transport: client.WebSocket, Proxy: "direct"})
	if err != nil {
		return []CacheRead{{Path: "http-first", Error: err.Error()}}
	}
	for range pageSize + 1 {
		if _, err := c.Publish(ctx, channel, stampedData(time.Now().UnixNano(), size)); err != nil {
			c.Close()
			return []CacheRead{{Path: "http-first", Error: err.Error()}}
		}
	}
	c.Close()

	var out []CacheRead
	dialer := NewCountingDialer()
	hc := historyClient(dialer, true, proxy)
	defer hc.CloseIdleConnections()
	read := func(path, etag string, n int) (CacheRead, string) {
		r := CacheRead{Path: path}
		lat := NewLatency()
		w0 := dialer.Count.Totals()
		var tag string
		for range n {
			t := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hub.URL+"/v1/channels/"+channel+"/messages?after=0&limit=100", nil)
			if etag != "" {
				req.Header.Set("If-None-Match", etag)
			}
			resp, err := hc.Do(req)
			if err != nil {
				r.Error = err.Error()
				break
			}
			var h msg.History
			if resp.StatusCode == http.StatusOK {
				err = json.NewDecoder(resp.Body).Decode(&h)
			}
			resp.Body.Close()
			if err != nil {
				r.Error = err.Error()
				break
			}
			lat.Record(time.Since(t))
			r.Status, r.Messages, r.CacheControl = resp.StatusCode, len(h.Messages), resp.Header.Get("Cache-Control")
			tag = resp.Header.Get("ETag")
		}
		w := dialer.Count.Totals().Sub(w0)
		r.Samples = int(lat.Count())
		r.Latency = lat.Summary()
		if r.Samples > 0 {
			r.DownBytesPerOp = float64(w.Read) / float64(r.Samples)
			r.UpBytesPerOp = float64(w.Written) / float64(r.Samples)
		}
		return r, tag
	}
	first, etag := read("http-first", "", 1)
	out = append(out, first)
	reval, _ := read("http-revalidate", etag, samples)
	out = append(out, reval)
	imm := CacheRead{Path: "http-immutable", Status: 0, Samples: samples, Messages: first.Messages, CacheControl: first.CacheControl}
	if !strings.Contains(first.CacheControl, "immutable") {
		imm.Error = "the page was not marked immutable: a cache would ask again"
	}
	out = append(out, imm)

	// The same page over an open WebSocket, asked again each time: a
	// WebSocket has no cache in front of it.
	wsr := CacheRead{Path: "ws-history"}
	wd := NewCountingDialer()
	o := &client.DialOptions{Transport: client.WebSocket, Dial: wd.Dial, Proxy: "direct"}
	if proxy != "" {
		o.Proxy = proxy
	}
	wc, err := client.Dial(ctx, hub.URL, o)
	if err == nil {
		defer wc.Close()
		octx, ocancel := context.WithTimeout(ctx, wait)
		_, err = wc.History(octx, channel, 0, pageSize) // opens the socket
		ocancel()
	}
	if err != nil {
		wsr.Error = err.Error()
		return append(out, wsr)
	}
	lat := NewLatency()
	w0 := wd.Count.Totals()
	for range samples {
		t := time.Now()
		h, err := wc.History(ctx, channel, 0, pageSize)
		if err != nil {
			wsr.Error = err.Error()
			break
		}
		lat.Record(time.Since(t))
		wsr.Messages = len(h.Messages)
	}
	w := wd.Count.Totals().Sub(w0)
	wsr.Samples = int(lat.Count())
	wsr.Latency = lat.Summary()
	if wsr.Samples > 0 {
		wsr.DownBytesPerOp = float64(w.Read) / float64(wsr.Samples)
		wsr.UpBytesPerOp = float64(w.Written) / float64(wsr.Samples)
	}
	return append(out, wsr)
}

// measureIdle opens n idle subscribers of transport and reads the hub's
// memory before and with them, after settle.
func measureIdleCost(ctx context.Context, hub HubInfo, transport string, n int, settle time.Duration, proxy string, wait time.Duration) IdleCost {
	res := IdleCost{Transport: transport, Subscribers: n}
	probe := newHubProbe(hub)
	before, err := probe.memory(ctx)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	channel := freshChannel("idle_" + transport)
	spec := deliverySpec{transport: transport, keepAlive: true, proxy: proxy}
	clients := make([]*client.Client, n)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	// Subscribed 32 at a time: a proxy that holds a stream's first bytes
	// then costs one wait, not one per subscriber.
	var wg sync.WaitGroup
	var firstErr atomic.Value
	sem := make(chan struct{}, 32)
	for i := range n {
		c, err := client.Dial(ctx, hub.URL, spec.clientOptions(nil))
		if err != nil {
			res.Error = fmt.Sprintf("dial %d: %v", i, err)
			return res
		}
		clients[i] = c
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			sctx, scancel := context.WithTimeout(ctx, wait)
			defer scancel()
			if _, err := c.Subscribe(sctx, []string{channel}, nil); err != nil {
				firstErr.CompareAndSwap(nil, fmt.Errorf("subscribe %d: %w", i, err))
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		res.Error = err.Error()
		return res
	}
	select {
	case <-ctx.Done():
	case <-time.After(settle):
	}
	with, err := probe.memory(ctx)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	f := float64(n)
	res.HeapKiB = (with.HeapInuse - before.HeapInuse) / f / 1024
	res.StackKiB = (with.StackInuse - before.StackInuse) / f / 1024
	res.RSSKiB = (with.RSS - before.RSS) / f / 1024
	res.Goroutines = (with.Goroutines - before.Goroutines) / f
	return res
}
