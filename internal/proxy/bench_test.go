package proxy

// Benchmarks: bulk throughput, tunnel setup rate and latency, memory per
// idle tunnel — for duplex and, in the same run, for dante (SOCKS) and
// tinyproxy (HTTP CONNECT) started on 127.0.0.1 with quiet logging, and
// for throughput also HAProxy as a plain splicing TCP forwarder.
// See docs/benchmarks.md for how to run them and the results.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/logbuf"
)

// ---- clients ----

// tunnelKind is how a benchmark client reaches its origin.
type tunnelKind string

const (
	kindDirect  tunnelKind = "direct"
	kindConnect tunnelKind = "connect"
	kindSOCKS5  tunnelKind = "socks5"
	kindSOCKS4  tunnelKind = "socks4"
	// kindForward is a plain TCP forwarder bound to one origin: connect
	// to the proxy, no handshake (HAProxy in TCP mode).
	kindForward tunnelKind = "tcp"
)

// openTunnel connects to origin ("ip:port") directly or through the proxy
// at proxyAddr, and returns once the tunnel is ready.
func openTunnel(kind tunnelKind, proxyAddr, origin string) (*net.TCPConn, error) {
	if kind == kindDirect || kind == kindForward {
		addr := origin
		if kind == kindForward {
			addr = proxyAddr
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	nc, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		return nil, err
	}
	c := nc.(*net.TCPConn)
	if err := handshake(kind, c, origin); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func handshake(kind tunnelKind, c *net.TCPConn, origin string) error {
	ap := netip.MustParseAddrPort(origin)
	ip4 := ap.Addr().As4()
	port := []byte{byte(ap.Port() >> 8), byte(ap.Port())}
	switch kind {
	case kindConnect:
		if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin); err != nil {
			return err
		}
		// Read the head without reading past it.
		var head []byte
		var b [256]byte
		for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			n, err := c.Read(b[:])
			if err != nil {
				return fmt.Errorf("CONNECT: %w (%q)", err, head)
			}
			head = append(head, b[:n]...)
		}
		if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) && !bytes.HasPrefix(head, []byte("HTTP/1.0 200")) {
			return fmt.Errorf("CONNECT: %q", head)
		}
	case kindSOCKS5:
		if _, err := c.Write([]byte{5, 1, 0}); err != nil {
			return err
		}
		var b [10]byte
		if _, err := io.ReadFull(c, b[:2]); err != nil || b[1] != 0 {
			return fmt.Errorf("socks5 method: %v %v", b[:2], err)
		}
		req := append([]byte{5, 1, 0, 1}, ip4[:]...)
		if _, err := c.Write(append(req, port...)); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, b[:10]); err != nil || b[1] != 0 {
			return fmt.Errorf("socks5 reply: %v %v", b, err)
		}
	case kindSOCKS4:
		req := append([]byte{4, 1}, port...)
		req = append(req, ip4[:]...)
		if _, err := c.Write(append(req, 0)); err != nil {
			return err
		}
		var b [8]byte
		if _, err := io.ReadFull(c, b[:]); err != nil || b[1] != 0x5a {
			return fmt.Errorf("socks4 reply: %v %v", b, err)
		}
	}
	return nil
}

// ---- servers under test ----

// benchProxy is one proxy a benchmark measures.
type benchProxy struct {
	name  string
	addr  string
	kinds []tunnelKind
	pid   int // for memory; 0 means this process
}

// freePort returns a port that was free a moment ago on 127.0.0.1.
func freePort(b testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startExternal runs a reference proxy in the foreground and waits until
// its port accepts connections.
func startExternal(b testing.TB, name string, port int, bin string, args ...string) *exec.Cmd {
	b.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		b.Fatalf("%s not installed (Debian package: see PEERS.md): %v", bin, err)
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return cmd
		}
		select {
		case <-done:
			b.Fatalf("%s exited: %s", name, out.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s did not listen on %s: %s", name, addr, out.String())
		}
		time.Sleep(10 * time.Millisecond) // polling for a foreign process
	}
}

func startDante(b testing.TB) benchProxy {
	dir := b.TempDir()
	port := freePort(b)
	conf := fmt.Sprintf(`logoutput: /dev/null
internal: 127.0.0.1 port = %d
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }
`, port)
	cf := filepath.Join(dir, "danted.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	cmd := startExternal(b, "danted", port, "danted", "-f", cf, "-p", filepath.Join(dir, "danted.pid"))
	return benchProxy{name: "dante", addr: fmt.Sprintf("127.0.0.1:%d", port),
		kinds: []tunnelKind{kindSOCKS5, kindSOCKS4}, pid: cmd.Process.Pid}
}

func startTinyproxy(b testing.TB) benchProxy {
	dir := b.TempDir()
	port := freePort(b)
	conf := fmt.Sprintf(`Port %d
Listen 127.0.0.1
Timeout 600
MaxClients 20000
LogLevel Critical
LogFile "/dev/null"
PidFile "%s/tinyproxy.pid"
DisableViaHeader Yes
Allow 127.0.0.1
`, port, dir)
	cf := filepath.Join(dir, "tinyproxy.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	cmd := startExternal(b, "tinyproxy", port, "tinyproxy", "-d", "-c", cf)
	return benchProxy{name: "tinyproxy", addr: fmt.Sprintf("127.0.0.1:%d", port),
		kinds: []tunnelKind{kindConnect}, pid: cmd.Process.Pid}
}

// startHAProxy runs HAProxy as a plain TCP forwarder to origin, splicing
// both ways: the standard zero-copy relay written in C, so its ratio to
// direct is the practical ceiling for any proxy on this machine. One
// process, one thread, no logging.
func startHAProxy(b testing.TB, origin string) benchProxy {
	dir := b.TempDir()
	port := freePort(b)
	conf := fmt.Sprintf(`global
	nbthread 1
	maxconn 4000
	tune.pipesize 1048576
defaults
	mode tcp
	timeout connect 5s
	timeout client 600s
	timeout server 600s
	option splice-request
	option splice-response
listen fwd
	bind 127.0.0.1:%d
	server origin %s
`, port, origin)
	cf := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(cf, []byte(conf), 0o644)
	cmd := startExternal(b, "haproxy", port, "/usr/sbin/haproxy", "-db", "-f", cf)
	return benchProxy{name: "haproxy", addr: fmt.Sprintf("127.0.0.1:%d", port),
		kinds: []tunnelKind{kindForward}, pid: cmd.Process.Pid}
}

// ---- origins ----

// benchOrigin accepts connections and runs fn on each; its goroutines
// end when the benchmark does.
func benchOrigin(b *testing.B, fn func(*net.TCPConn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				fn(c.(*net.TCPConn))
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	})
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// ---- throughput ----

const (
	chunk      = 1 << 20
	roundBytes = 64 * chunk
)

// BenchmarkThroughput sends bulk streams directly (the baseline) and
// through each proxy and protocol, interleaved: every round (b.N of them)
// sends 64 MiB down every path in turn, in a rotating order, so that the
// load of a shared machine falls on all paths alike. It reports MB/s per
// path and each path's ratio to direct.
func BenchmarkThroughput(b *testing.B) {
	// The sink acknowledges every 64 MiB with one byte back, so a sender
	// knows its round has arrived.
	sink := benchOrigin(b, func(c *net.TCPConn) {
		buf := make([]byte, 256<<10)
		var n int64
		for {
			k, err := c.Read(buf)
			n += int64(k)
			for n >= roundBytes {
				n -= roundBytes
				c.Write([]byte{1})
			}
			if err != nil {
				return
			}
		}
	})
	type path struct {
		name        string
		pid         int // the proxy process, 0 for direct
		c           *net.TCPConn
		d           time.Duration
		cpu         time.Duration // the proxy's CPU time during this path's turns
		self        time.Duration // this process's (sender and sink) CPU time
		busy, total int64         // machine-wide busy and total jiffies
	}
	var paths []*path
	proxies := []benchProxy{{name: "direct", kinds: []tunnelKind{kindDirect}}, startDuplexChild(b).benchProxy,
		startHAProxy(b, sink), startDante(b), startTinyproxy(b)}
	for _, p := range proxies {
		for _, kind := range p.kinds {
			name := p.name
			if kind != kindDirect {
				name += "-" + string(kind)
			}
			c, err := openTunnel(kind, p.addr, sink)
			if err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			defer c.Close()
			paths = append(paths, &path{name: name, pid: p.pid, c: c})
		}
	}
	buf := make([]byte, chunk)
	b.ResetTimer()
	for round := range b.N {
		for i := range paths {
			p := paths[(round+i)%len(paths)]
			// The readings walk /proc, so they stay outside the timed
			// span (direct has no proxy to read).
			c0, s0 := cpuTime(p.pid), selfCPU()
			b0, tot0 := machineJiffies()
			t0 := time.Now()
			for range roundBytes / chunk {
				if _, err := p.c.Write(buf); err != nil {
					b.Fatalf("%s: %v", p.name, err)
				}
			}
			var ack [1]byte
			if _, err := io.ReadFull(p.c, ack[:]); err != nil {
				b.Fatalf("%s ack: %v", p.name, err)
			}
			p.d += time.Since(t0)
			p.cpu += cpuTime(p.pid) - c0
			p.self += selfCPU() - s0
			b1, tot1 := machineJiffies()
			p.busy += b1 - b0
			p.total += tot1 - tot0
		}
	}
	b.StopTimer()
	mbps := func(p *path) float64 { return float64(b.N) * roundBytes / 1e6 / p.d.Seconds() }
	direct := mbps(paths[0])
	for _, p := range paths {
		b.ReportMetric(mbps(p), p.name+"-MB/s")
		// Cores kept busy by the sender, the sink and the proxy (2 means
		// this 2-core machine was saturated by the transfer alone), and
		// the machine's busy fraction, everyone's work included.
		b.ReportMetric((p.cpu+p.self).Seconds()/p.d.Seconds(), p.name+"-cores")
		if p.total > 0 {
			b.ReportMetric(float64(p.busy)/float64(p.total), p.name+"-busy")
		}
		if p != paths[0] {
			b.ReportMetric(mbps(p)/direct, p.name+"-ratio")
			// CPU seconds the proxy spent per GB relayed.
			b.ReportMetric(p.cpu.Seconds()/(float64(b.N)*roundBytes/1e9), p.name+"-cpu-s/GB")
		}
	}
}

// ---- setup rate and latency ----

// setupsPerRound is how many tunnels each path opens per round.
const setupsPerRound = 2000

// BenchmarkSetup opens tunnels from 50 concurrent clients; one setup is
// connect + handshake + one byte echoed through the tunnel. Like
// BenchmarkThroughput it interleaves the paths: each round (b.N of them)
// runs 2,000 setups on every path in a rotating order. It reports setups/s
// and p50/p99 setup latency per path.
func BenchmarkSetup(b *testing.B) {
	// As proxybench (../shared/tools/proxybench -mode connrate) does it,
	// so the two agree: the origin echoes until EOF, and the client closes
	// first, with a FIN, so the proxy passes the half-close on and sees
	// both ends finish, as it does for real clients. (An earlier version
	// had the origin close first and the client reset, which spared the
	// proxy the FIN exchange and read 9-10k setups/s where proxybench read
	// 3.4-3.9k.) TIME_WAIT sockets pile up on the clients' ephemeral ports;
	// loopback reuses them (net.ipv4.tcp_tw_reuse).
	echo := benchOrigin(b, func(c *net.TCPConn) {
		io.Copy(c, c)
	})
	type path struct {
		name    string
		kind    tunnelKind
		addr    string
		pid     int
		cpu     time.Duration
		lat     []time.Duration
		d       time.Duration
		failed  int64
		lastErr string
	}
	var paths []*path
	proxies := []benchProxy{{name: "direct", kinds: []tunnelKind{kindDirect}}, startDuplexChild(b).benchProxy, startDante(b), startTinyproxy(b)}
	for _, p := range proxies {
		for _, kind := range p.kinds {
			name := p.name
			if kind != kindDirect {
				name += "-" + string(kind)
			}
			paths = append(paths, &path{name: name, kind: kind, addr: p.addr, pid: p.pid})
		}
	}
	const clients = 50
	b.ResetTimer()
	for round := range b.N {
		for i := range paths {
			p := paths[(round+i)%len(paths)]
			var next, failed atomic.Int64
			var firstFail atomic.Value
			lat := make([][]time.Duration, clients)
			var wg sync.WaitGroup
			start := time.Now()
			c0 := cpuTime(p.pid)
			for w := range clients {
				wg.Go(func() {
					for next.Add(1) <= setupsPerRound {
						t0 := time.Now()
						c, err := openTunnel(p.kind, p.addr, echo)
						if err == nil {
							var x [1]byte
							c.Write([]byte{'x'})
							_, err = io.ReadFull(c, x[:])
							if err == nil {
								lat[w] = append(lat[w], time.Since(t0))
							}
							c.Close()
						}
						if err != nil {
							// Counted, not fatal: the reference proxies
							// refuse some setups under load.
							failed.Add(1)
							firstFail.CompareAndSwap(nil, err.Error())
						}
					}
				})
			}
			wg.Wait()
			p.d += time.Since(start)
			p.cpu += cpuTime(p.pid) - c0
			p.lat = append(p.lat, slices.Concat(lat...)...)
			p.failed += failed.Load()
			if e, ok := firstFail.Load().(string); ok {
				p.lastErr = e
			}
		}
	}
	b.StopTimer()
	for _, p := range paths {
		if p.failed > 0 {
			b.Logf("%s: %d of %d setups failed, e.g. %s", p.name, p.failed, b.N*setupsPerRound, p.lastErr)
		}
		if len(p.lat) == 0 {
			b.Fatalf("%s: no setup succeeded", p.name)
		}
		slices.Sort(p.lat)
		b.ReportMetric(float64(len(p.lat))/p.d.Seconds(), p.name+"-setups/s")
		b.ReportMetric(float64(p.lat[len(p.lat)/2].Microseconds()), p.name+"-p50-µs")
		b.ReportMetric(float64(p.lat[len(p.lat)*99/100].Microseconds()), p.name+"-p99-µs")
		if p.pid != 0 {
			// The proxy's CPU time per setup: robust to machine load.
			b.ReportMetric(float64(p.cpu.Microseconds())/float64(len(p.lat)+int(p.failed)), p.name+"-cpu-µs/setup")
		}
	}
}

// ---- memory per idle tunnel ----

// idleTunnels is how many tunnels BenchmarkIdleTunnelMemory holds open.
// Each costs two descriptors in this process (client end, origin end) and
// two in the proxy, against a limit of 20,000 per process here; set
// DUPLEX_BENCH_TUNNELS to change it.
func idleTunnels() int {
	if n, err := strconv.Atoi(os.Getenv("DUPLEX_BENCH_TUNNELS")); err == nil && n > 0 {
		return n
	}
	return 5000
}

// BenchmarkIdleTunnelMemory measures the memory of a proxy process per
// idle tunnel: each tunnel echoes one byte (so it has carried traffic),
// then sits idle. The measure is the growth of the proxy's proportional
// set size (PSS, summed over its processes) between a warmed-up baseline
// and N open tunnels. duplex runs in a child process (this test binary),
// so its figure is comparable with the C proxies'.
func BenchmarkIdleTunnelMemory(b *testing.B) {
	n := idleTunnels()
	echo := benchOrigin(b, func(c *net.TCPConn) {
		var x [1]byte
		if _, err := c.Read(x[:]); err != nil {
			return
		}
		c.Write(x[:])
		c.Read(x[:])
	})
	child := startDuplexChild(b)
	dante := startDante(b)
	tiny := startTinyproxy(b)
	for _, tc := range []struct {
		p    benchProxy
		kind tunnelKind
		gc   func() string
	}{
		{child.benchProxy, kindSOCKS5, child.gc},
		{child.benchProxy, kindConnect, child.gc},
		{dante, kindSOCKS5, nil},
		{tiny, kindConnect, nil},
	} {
		b.Run(tc.p.name+"-"+string(tc.kind), func(b *testing.B) {
			open := func(k int) []*net.TCPConn {
				cs := make([]*net.TCPConn, 0, k)
				for range k {
					c, err := openTunnel(tc.kind, tc.p.addr, echo)
					if err != nil {
						b.Fatalf("tunnel %d: %v", len(cs), err)
					}
					var x [1]byte
					c.Write([]byte{'x'})
					if _, err := io.ReadFull(c, x[:]); err != nil {
						b.Fatalf("tunnel %d echo: %v", len(cs), err)
					}
					cs = append(cs, c)
				}
				return cs
			}
			closeAll := func(cs []*net.TCPConn) {
				for _, c := range cs {
					c.SetLinger(0)
					c.Close()
				}
			}
			// Warm up: let the proxy reach its steady state (pools, forked
			// children, runtime structures) with a few hundred tunnels.
			closeAll(open(500))
			settle(tc.gc)
			base := pss(b, tc.p.pid)
			cs := open(n)
			settle(tc.gc)
			full := pss(b, tc.p.pid)
			stats := ""
			if tc.gc != nil {
				stats = tc.gc()
			}
			closeAll(cs)
			per := float64(full-base) / float64(n)
			b.ReportMetric(per/1024, "KiB/tunnel")
			b.ReportMetric(float64(n), "tunnels")
			b.Logf("%s %s: PSS %d KiB → %d KiB with %d idle tunnels: %.1f KiB each %s",
				tc.p.name, tc.kind, base>>10, full>>10, n, per/1024, stats)
			// Let the proxy drop them before the next round.
			settle(tc.gc)
		})
	}
}

// settle gives a proxy time to finish reacting to a burst of opens or
// closes (there is no ready signal from a foreign process), then runs a GC
// in the duplex child.
func settle(gc func() string) {
	time.Sleep(500 * time.Millisecond) // a foreign process has no signal to wait for
	if gc != nil {
		gc()
	}
}

// pss returns the proportional set size in bytes of pid and all its
// descendants.
func pss(b testing.TB, pid int) int64 {
	b.Helper()
	var total int64
	for _, p := range processTree(pid) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "Pss:") {
				kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
				total += kb << 10
			}
		}
	}
	if total == 0 {
		b.Fatalf("no PSS for pid %d", pid)
	}
	return total
}

// procStat returns the fields of /proc/<pid>/stat after the command name.
func procStat(pid int) []string {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(st)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

// processTree returns pid and all its descendants.
func processTree(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// state ppid ...
		if f := procStat(p); len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		out = append(out, p)
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	return out
}

// cpuTime returns the user+system CPU time used so far by pid and its
// live descendants. Unlike wall-clock rates it hardly depends on how
// loaded the machine is.
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	var ticks int64
	for _, p := range processTree(pid) {
		// After the name: state(0) ppid(1) ... utime(11) stime(12).
		if f := procStat(p); len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + s
		}
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// selfCPU returns the user+system CPU time this process (not its
// children) has used.
func selfCPU() time.Duration {
	f := procStat(os.Getpid())
	if len(f) <= 12 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * (time.Second / 100)
}

// machineJiffies returns the busy and total CPU time of the whole machine
// so far, in clock ticks, from the first line of /proc/stat.
func machineJiffies() (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	// cpu user nice system idle iowait irq softirq steal ...
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total
}

// duplexChild is the proxy running in a child process.
type duplexChild struct {
	benchProxy
	gc func() string
}

const childEnv = "DUPLEX_PROXY_BENCH_CHILD"

// startDuplexChild re-runs this test binary as a bare proxy process, so
// duplex, like dante and tinyproxy, runs in a process of its own, apart
// from the load generator and the origin.
func startDuplexChild(b *testing.B) duplexChild {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil {
		b.Fatalf("child: %v", err)
	}
	var mu sync.Mutex
	gc := func() string {
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(stdin, "gc\n")
		s, _ := out.ReadString('\n')
		return strings.TrimSpace(s)
	}
	return duplexChild{benchProxy{name: "duplex", addr: strings.TrimSpace(line), pid: cmd.Process.Pid,
		kinds: []tunnelKind{kindConnect, kindSOCKS5, kindSOCKS4}}, gc}
}

// runBenchChild is the child's main: serve a proxy, print its address,
// answer "gc" lines with runtime figures, exit when stdin closes.
func runBenchChild() {
	// The access log on, as `duplex proxy` writes it (JSON through
	// logbuf), into a file removed at exit; the caps off, so the memory
	// benchmark can hold thousands of tunnels from one address.
	logFile, err := os.CreateTemp("", "duplex-proxy-bench-*.log")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.Remove(logFile.Name())
	alog := logbuf.New(logFile, logbuf.Config{})
	defer alog.Close()
	s, err := New(Config{Allow: loopback, Logger: slog.New(slog.NewJSONHandler(alog, nil)), MaxConns: -1, MaxConnsPerClient: -1})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go s.Serve(ln)
	if f := os.Getenv("DUPLEX_PROXY_BENCH_CPUPROFILE"); f != "" {
		// For looking into the child: go tool pprof <test binary> <file>.
		out, err := os.Create(f)
		if err == nil {
			pprof.StartCPUProfile(out)
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Println(ln.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("(heap in use %d KiB, stacks %d KiB, %d goroutines)\n",
			ms.HeapInuse>>10, ms.StackInuse>>10, runtime.NumGoroutine())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		os.Exit(1)
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runBenchChild()
		return
	}
	os.Exit(m.Run())
}
