package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The Redis engine benchmarks: duplex hubs (child processes, as in the
// WebSocket benchmarks) on one redis-server that the benchmark starts on a
// free loopback port, beside hubs on the memory engine, interleaved round
// by round, each run on fresh processes and a fresh, empty Redis. b.N is
// ignored: run with -benchtime 1x. Figures: docs/benchmarks.md (## Redis
// engine).
//
//	go test -run '^$' -bench '^BenchmarkRedis' -benchtime 1x -timeout 30m ./internal/bench
//
// History is kept as Centrifugo keeps it in the anchor runs (100
// publications, 5 minutes), so the two do the same work per publish.
var redisBenchHistory = []string{"--history-size", "100", "--history-ttl", "5m"}

// redisBenchRounds is how many times every configuration runs; the
// environment's DUPLEX_BENCH_ROUNDS overrides it.
func redisBenchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("DUPLEX_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// redisProcess is one redis-server owned by the benchmark.
type redisProcess struct {
	addr string
	cmd  *exec.Cmd
}

func (r *redisProcess) url() string { return "redis://" + r.addr + "/0" }

// cpu is redis-server's user + system CPU time so far, from /proc.
func (r *redisProcess) cpu(b *testing.B) time.Duration { return pidCPU(b, r.cmd.Process.Pid) }

// stop kills the server by its PID and waits for it.
func (r *redisProcess) stop() {
	r.cmd.Process.Signal(syscall.SIGKILL)
	r.cmd.Wait()
}

// startRedisProcess starts an empty redis-server without persistence on
// a free loopback port; it is killed when b ends (or earlier, by stop).
func startRedisProcess(b *testing.B) *redisProcess {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", b.TempDir(), "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		b.Fatalf("redis-server: %v", err)
	}
	r := &redisProcess{addr: addr, cmd: cmd}
	var once sync.Once
	b.Cleanup(func() { once.Do(r.stop) })
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return r
		}
		if time.Now().After(deadline) {
			b.Fatalf("redis-server on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the listener, not synchronising a test
	}
}

// pidCPU is a process's user + system CPU time from /proc/<pid>/stat.
func pidCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("read CPU of %d: %v", pid, err)
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// buildDuplex builds ./cmd/duplex into b's temporary folder, once for
// all the hubs a benchmark starts.
func buildDuplex(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "duplex")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/duplex").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// hubProcess is one `duplex serve` child.
type hubProcess struct {
	url string
	pid int
}

// startHubs starts n hubs of bin with args, and stops
// them (by PID) when b ends.
func startHubs(b *testing.B, bin string, n int, args ...string) []hubProcess {
	b.Helper()
	hubs := make([]hubProcess, n)
	for i := range hubs {
		url, pid := startHubFrom(b, bin, args...)
		hubs[i] = hubProcess{url: url, pid: pid}
	}
	return hubs
}

// runPublishOver runs publishers (one keep-alive connection and one
// request in flight each) spread round robin over hubs, for warmup and
// then duration, and merges their latencies: the Run's Rate is the whole
// cluster's publishes per second.
func runPublishOver(ctx context.Context, hubs []hubProcess, publishers int, warmup, duration time.Duration) (Run, error) {
	cfg := PublishConfig{URL: hubs[0].url, Publishers: publishers, Warmup: warmup, Duration: duration}.withDefaults()
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	deadline := measureFrom.Add(cfg.Duration)
	run := Run{Workload: "publish", Clients: publishers, Client: ClientConn}
	pubs := make([]*publisher, publishers)
	for i := range pubs {
		target, err := publishURL(hubs[i%len(hubs)].url, cfg.Channel)
		if err != nil {
			return Run{}, err
		}
		pubs[i] = &publisher{cfg: cfg, url: target, lat: NewLatency(), conn: newConnPublisher(cfg, target)}
		defer pubs[i].conn.close()
	}
	total, lastEnd := runPublishers(ctx, pubs, measureFrom, deadline, &run)
	if lastEnd.After(measureFrom) {
		run.Seconds = lastEnd.Sub(measureFrom).Seconds()
		run.Rate = float64(run.Ops) / run.Seconds
	}
	run.Latency = total.Summary()
	return run, nil
}

// BenchmarkRedisPublish: publishes/s and publish latency (POST written →
// 201 read) on one channel, with 8 and 64 publishers, through one hub on
// the memory engine, one hub on Redis and three hubs sharing one Redis
// (publishers spread over them). It reports the hubs' CPU and, for
// Redis, redis-server's CPU per 1,000 publications.
func BenchmarkRedisPublish(b *testing.B) {
	type point struct {
		engine string // "memory" or "redis"
		hubs   int
	}
	points := []point{{"memory", 1}, {"redis", 1}, {"redis", 3}}
	bin := buildDuplex(b)
	for round := range redisBenchRounds() {
		for _, publishers := range []int{8, 64} {
			for i := range points {
				// Rotate the order each round, so that no configuration
				// always runs first after a pause.
				p := points[(i+round)%len(points)]
				name := fmt.Sprintf("round=%d/pub=%d/engine=%s/hubs=%d", round, publishers, p.engine, p.hubs)
				b.Run(name, func(b *testing.B) {
					args := append([]string{"--publish-rate", "-1"}, redisBenchHistory...)
					var rds *redisProcess
					if p.engine == "redis" {
						rds = startRedisProcess(b)
						args = append(args, "--engine", rds.url())
					}
					hubs := startHubs(b, bin, p.hubs, args...)
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
					defer cancel()
					var hub0 time.Duration
					for _, h := range hubs {
						hub0 += pidCPU(b, h.pid)
					}
					// The warm-up is CPU-measured too (rare and short next to
					// the 5 s measured): readings at the edges of the window
					// would need a clock of their own for each process.
					var rds0 time.Duration
					if rds != nil {
						rds0 = rds.cpu(b)
					}
					run, err := runPublishOver(ctx, hubs, publishers, time.Second, 5*time.Second)
					if err != nil {
						b.Fatal(err)
					}
					var hub1 time.Duration
					for _, h := range hubs {
						hub1 += pidCPU(b, h.pid)
					}
					if run.Errors > 0 || run.Ops == 0 {
						b.Fatalf("%d publishes, %d errors; the first: %s", run.Ops, run.Errors, run.FirstError)
					}
					// All publishes, warm-up included, for the CPU figures.
					all := float64(run.Ops) * 6 / 5
					b.ReportMetric(run.Rate, "publishes/s")
					b.ReportMetric(run.Latency.P50/1000, "p50-ms")
					b.ReportMetric(run.Latency.P99/1000, "p99-ms")
					b.ReportMetric((hub1-hub0).Seconds()*1000/all*1000, "hub-cpu-ms/1k")
					if rds != nil {
						b.ReportMetric((rds.cpu(b)-rds0).Seconds()*1000/all*1000, "redis-cpu-ms/1k")
					}
				})
			}
		}
	}
}

// BenchmarkRedisFanout: hub CPU per million WebSocket deliveries at 1,000
// subscribers × 100 publications/s (POSTed to the same hub), on the memory
// engine and on Redis, alternating, a fresh hub (and Redis) each run. The
// Redis cost is per publication, so the two should be within 10 %.
func BenchmarkRedisFanout(b *testing.B) {
	bin := buildDuplex(b)
	for round := range redisBenchRounds() {
		engines := []string{"memory", "redis"}
		if round%2 == 1 {
			engines[0], engines[1] = engines[1], engines[0]
		}
		for _, engine := range engines {
			b.Run(fmt.Sprintf("round=%d/engine=%s", round, engine), func(b *testing.B) {
				args := append([]string{"--publish-rate", "-1"}, redisBenchHistory...)
				var rds *redisProcess
				if engine == "redis" {
					rds = startRedisProcess(b)
					args = append(args, "--engine", rds.url())
				}
				hub := startHubs(b, bin, 1, args...)[0]
				var rds0 time.Duration
				if rds != nil {
					rds0 = rds.cpu(b)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				res, err := RunWSFanout(ctx, FanoutConfig{
					URL: hub.url, Channel: "fan", Subscribers: 1000, Rate: 100, PublishHTTP: true,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res.DeliveredRate, "deliveries/s")
				b.ReportMetric(res.Latency.P50/1000, "p50-ms")
				b.ReportMetric(res.Latency.P99/1000, "p99-ms")
				b.ReportMetric(res.HubCPUPerMillion, "hub-cpu-s/1M")
				if rds != nil {
					b.ReportMetric((rds.cpu(b) - rds0).Seconds(), "redis-cpu-s")
				}
				if res.Delivered < res.Expected {
					b.Errorf("delivered %d of %d (closed connections: %d)", res.Delivered, res.Expected, res.Closed)
				}
			})
		}
	}
}
