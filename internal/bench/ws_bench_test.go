package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The WebSocket benchmarks run the hub as a separate process (built from
// ./cmd/duplex), so the load generator's CPU is not counted as the hub's;
// both are measured over loopback. Run them with
//
//	go test -run '^$' -bench 'BenchmarkWS' -benchtime 1x -timeout 30m ./internal/bench
//
// and see docs/benchmarks.md (## WebSocket) for figures.

// startHubProcess builds duplex and runs `duplex serve` on 127.0.0.1:0 with
// args; it returns the hub's base URL and stops the process (by its PID)
// when b ends.
func startHubProcess(b *testing.B, args ...string) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "duplex")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/duplex")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	url, _ := startHubFrom(b, bin, args...)
	return url
}

// startHubFrom runs `bin serve` on 127.0.0.1:0 with args; it returns the
// hub's base URL and PID, and stops the process (by its PID) when b ends.
func startHubFrom(b *testing.B, bin string, args ...string) (string, int) {
	b.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--log-level", "warn"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		if _, rest, ok := strings.Cut(line, "hub listening on "); ok {
			url, _, _ := strings.Cut(rest, " ")
			go func() {
				for sc.Scan() {
					fmt.Fprintln(os.Stderr, "hub:", sc.Text())
				}
			}()
			return url, cmd.Process.Pid
		}
	}
	b.Fatalf("hub exited before listening: %v", sc.Err())
	return "", 0
}

// BenchmarkWSFanout: one channel, 1 to 10,000 subscribers, a fixed publish
// rate each. b.N is ignored: run with -benchtime 1x.
func BenchmarkWSFanout(b *testing.B) {
	url := startHubProcess(b, "--publish-rate", "-1")
	for _, p := range []struct {
		subs int
		rate float64
	}{
		{1, 1000}, {1, 10000},
		{100, 1000},
		{1000, 100}, {1000, 200},
		{10000, 5}, {10000, 10},
	} {
		b.Run(fmt.Sprintf("subs=%d/rate=%g", p.subs, p.rate), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res, err := RunWSFanout(ctx, FanoutConfig{
				URL: url, Channel: fmt.Sprintf("fan%d_%g", p.subs, p.rate),
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
			b.ReportMetric(res.HubCPUPerMillion/1000, "hub-cpu-ms/1k")
			b.Logf("%+v", res)
			if res.Delivered < res.Expected {
				b.Errorf("delivered %d of %d (closed connections: %d)", res.Delivered, res.Expected, res.Closed)
			}
		})
	}
}

// BenchmarkWSFanoutWriteDelay: 1,000 subscribers at 100 msg/s, the point
// of the CPU target, with the hub's --write-delay at 0 and above: the
// delay lets messages share a write(2), trading latency for CPU.
func BenchmarkWSFanoutWriteDelay(b *testing.B) {
	for _, delay := range []time.Duration{0, 25 * time.Millisecond, 30 * time.Millisecond} {
		b.Run(fmt.Sprintf("delay=%v", delay), func(b *testing.B) {
			url := startHubProcess(b, "--publish-rate", "-1", "--write-delay", delay.String())
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res, err := RunWSFanout(ctx, FanoutConfig{URL: url, Channel: "delay", Subscribers: 1000, Rate: 100})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.Latency.P50/1000, "p50-ms")
			b.ReportMetric(res.Latency.P99/1000, "p99-ms")
			b.ReportMetric(res.Latency.Max/1000, "max-ms")
			b.ReportMetric(res.HubCPUPerMillion, "hub-cpu-s/1M")
			if res.Delivered < res.Expected {
				b.Errorf("delivered %d of %d (closed connections: %d)", res.Delivered, res.Expected, res.Closed)
			}
		})
	}
}

// BenchmarkWSIdleMemory: the hub's memory with 10,000 idle subscribed
// WebSocket connections against none.
func BenchmarkWSIdleMemory(b *testing.B) {
	url := startHubProcess(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// 130 s idle: past the runtime's 2-minute forced GC, so the live heap
	// is what the connections keep, not the garbage of setting them up.
	res, err := RunWSIdle(ctx, WSIdleConfig{URL: url, Conns: 10000, Settle: 130 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.RSSPerConn, "rss-KiB/conn")
	b.ReportMetric(res.HeapPerConn, "heap-KiB/conn")
	b.ReportMetric(res.LivePerConn, "live-KiB/conn")
	b.ReportMetric(res.StackPerConn, "stack-KiB/conn")
	b.ReportMetric(res.GoroutinesPerConn, "goroutines/conn")
	b.ReportMetric(res.Before.RSS/1024, "rss0-KiB")
	b.ReportMetric(res.With.RSS/1024, "rss10k-KiB")
	b.Logf("%+v", res)
}

// BenchmarkWSCompression: 1,000 subscribers × 100 msg/s at three
// publication sizes, subscribers offering permessage-deflate or not, the
// runs interleaved (size by size, plain then compressed) on one hub with
// the default --ws-compression-min, and the 100-byte point again on a hub
// compressing every size. It reports the bytes each delivery took on the
// wire and the hub's CPU per million deliveries.
func BenchmarkWSCompression(b *testing.B) {
	url := startHubProcess(b, "--publish-rate", "-1")
	urlAll := startHubProcess(b, "--publish-rate", "-1", "--ws-compression-min", "0")
	for _, size := range []int{100, 1024, 16384} {
		for _, p := range []struct {
			name     string
			url      string
			compress bool
		}{{"plain", url, false}, {"deflate", url, true}, {"deflate-min0", urlAll, true}} {
			if p.name == "deflate-min0" && size != 100 {
				continue
			}
			b.Run(fmt.Sprintf("size=%d/%s", size, p.name), func(b *testing.B) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				res, err := RunWSFanout(ctx, FanoutConfig{
					URL: p.url, Channel: fmt.Sprintf("z%d%s", size, p.name),
					Subscribers: 1000, Rate: 100, Size: size, Compression: p.compress,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.Logf("%+v", res)
				b.ReportMetric(res.WireBytesPerDelivery, "wire-B/delivery")
				b.ReportMetric(res.HubCPUPerMillion, "hub-cpu-s/1M")
				b.ReportMetric(res.Latency.P50/1000, "p50-ms")
				b.ReportMetric(res.Latency.P99/1000, "p99-ms")
				if res.Delivered < res.Expected {
					b.Errorf("delivered %d of %d (closed connections: %d, the first: %s)", res.Delivered, res.Expected, res.Closed, res.CloseReason)
				}
			})
		}
	}
}
