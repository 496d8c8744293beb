package bench

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// The SSE and NDJSON benchmarks run the hub as a separate process, like the
// WebSocket ones (startHubProcess), so the load generator's CPU is not
// counted as the hub's. Run them with
//
//	go test -run '^$' -bench 'BenchmarkStream' -benchtime 1x -timeout 30m ./internal/bench
//
// and see docs/benchmarks.md (## SSE, NDJSON and long polling) for figures.

// BenchmarkStreamFanout: one channel, 100 to 10,000 SSE or NDJSON readers,
// a fixed publish rate each (the WebSocket benchmark's grid). b.N is
// ignored: run with -benchtime 1x.
func BenchmarkStreamFanout(b *testing.B) {
	url := startHubProcess(b)
	for _, tp := range []string{"sse", "stream"} {
		for _, p := range []struct {
			subs int
			rate float64
		}{
			{100, 1000},
			{1000, 100}, {1000, 200},
			{10000, 10}, {10000, 20},
		} {
			b.Run(fmt.Sprintf("%s/subs=%d/rate=%g", tp, p.subs, p.rate), func(b *testing.B) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				res, err := RunStreamFanout(ctx, FanoutConfig{
					URL: url, Transport: tp, Channel: fmt.Sprintf("%s%d_%g", tp, p.subs, p.rate),
					Subscribers: p.subs, Rate: p.rate,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res.DeliveredRate, "deliveries/s")
				b.ReportMetric(res.Latency.P50/1000, "p50-ms")
				b.ReportMetric(res.Latency.P99/1000, "p99-ms")
				b.ReportMetric(res.Latency.Max/1000, "max-ms")
				b.ReportMetric(res.HubCPUPerMillion, "hub-cpu-s/1M")
				b.Logf("%+v", res)
				if res.Delivered < res.Expected {
					b.Errorf("delivered %d of %d (closed streams: %d)", res.Delivered, res.Expected, res.Closed)
				}
			})
		}
	}
}

// BenchmarkStreamIdleMemory: the hub's memory with 10,000 idle SSE (or
// NDJSON) streams against none, each in a fresh hub process.
func BenchmarkStreamIdleMemory(b *testing.B) {
	for _, tp := range []string{"sse", "stream"} {
		b.Run(tp, func(b *testing.B) {
			url := startHubProcess(b)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			// 130 s idle, as for WebSocket: past the runtime's 2-minute
			// forced GC, so the live heap is what the streams keep.
			res, err := RunStreamIdle(ctx, StreamIdleConfig{URL: url, Transport: tp, Conns: 10000, Settle: 130 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.RSSPerConn, "rss-KiB/conn")
			b.ReportMetric(res.HeapPerConn, "heap-KiB/conn")
			b.ReportMetric(res.LivePerConn, "live-KiB/conn")
			b.ReportMetric(res.StackPerConn, "stack-KiB/conn")
			b.ReportMetric(res.GoroutinesPerConn, "goroutines/conn")
			b.Logf("%+v", res)
		})
	}
}

// BenchmarkStreamVsWS runs SSE, NDJSON and WebSocket fan-out back to back
// at each point, twice, against one hub process: on a shared machine whose
// load moves, neighbours in time are the fairest comparison of hub CPU per
// delivery. All three publish the same way (POSTs): at low fan-out the
// publishing is a good part of the CPU per delivery. Run with
//
//	go test -run '^$' -bench 'BenchmarkStreamVsWS' -benchtime 1x -timeout 30m ./internal/bench
func BenchmarkStreamVsWS(b *testing.B) {
	url := startHubProcess(b, "--publish-rate", "-1")
	for _, p := range []struct {
		subs int
		rate float64
	}{{100, 1000}, {1000, 100}, {10000, 10}} {
		for round := 1; round <= 2; round++ {
			for _, tp := range []string{"ws", "sse", "stream"} {
				b.Run(fmt.Sprintf("subs=%d/rate=%g/%s/round=%d", p.subs, p.rate, tp, round), func(b *testing.B) {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
					defer cancel()
					ch := fmt.Sprintf("vs%s%d_%g_%d", tp, p.subs, p.rate, round)
					var rate, cpu, p50, p99 float64
					var delivered, expected int64
					if tp == "ws" {
						res, err := RunWSFanout(ctx, FanoutConfig{URL: url, Channel: ch, Subscribers: p.subs, Rate: p.rate, PublishHTTP: true})
						if err != nil {
							b.Fatal(err)
						}
						rate, cpu, p50, p99 = res.DeliveredRate, res.HubCPUPerMillion, res.Latency.P50, res.Latency.P99
						delivered, expected = res.Delivered, res.Expected
					} else {
						res, err := RunStreamFanout(ctx, FanoutConfig{URL: url, Transport: tp, Channel: ch, Subscribers: p.subs, Rate: p.rate})
						if err != nil {
							b.Fatal(err)
						}
						rate, cpu, p50, p99 = res.DeliveredRate, res.HubCPUPerMillion, res.Latency.P50, res.Latency.P99
						delivered, expected = res.Delivered, res.Expected
					}
					b.ReportMetric(rate, "deliveries/s")
					b.ReportMetric(cpu, "hub-cpu-s/1M")
					b.ReportMetric(p50/1000, "p50-ms")
					b.ReportMetric(p99/1000, "p99-ms")
					if delivered < expected {
						b.Errorf("delivered %d of %d", delivered, expected)
					}
				})
			}
		}
	}
}
