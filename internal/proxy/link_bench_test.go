//go:build linux

package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/duplexhq/duplex/internal/logbuf"
)

// The link benchmark measures the proxy where it lives: on a link, not on
// loopback where sender, relay and sink share the CPU with nothing in
// between. It builds three network namespaces,
//
//	client 198.18.0.1 ──veth, tbf── 198.18.0.2 proxy 198.18.1.1 ──veth, tbf── 198.18.1.2 sink
//
// and puts the proxy in the middle one, on the path, as a proxy at a
// network's edge is: the direct stream is routed by the middle
// namespace's kernel over the same two shaped links, so proxied and direct
// cross exactly the same wires and differ only in who relays. Each veth
// end is shaped with tc tbf at the rate under test (1 and 5 Gbit/s), both
// directions. Addresses come from the benchmarking range 198.18.0.0/15 and
// exist only inside the namespaces: every link is created inside a
// namespace (never in the host's), and deleting the three namespaces
// removes everything; that happens when the benchmark ends, fails, or is
// interrupted (SIGINT/SIGTERM), and namespaces a killed run left behind
// are deleted by the next run.
//
// It needs root (network namespaces and tc) and says so otherwise:
//
//	go test -run '^$' -bench BenchmarkLink -benchtime 3x ./internal/proxy
//
// The proxy runs in this process with the command's default settings and
// its access log on (JSON through logbuf into a file), its sockets created
// in the middle namespace. Reported per rate: direct, CONNECT and SOCKS5
// stream throughput (Mbit/s) and the proxied/direct ratio, and the p50/p99
// of a 1-byte echo round trip over an open tunnel, direct and proxied, with
// the p99 the proxy adds.

const linkPrefix = "dpxlink-"

// linkNet is the three namespaces of one run.
type linkNet struct {
	cli, mid, srv string
}

func BenchmarkLink(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Fatal("BenchmarkLink builds network namespaces and shapes links with tc: it must run as root " +
			"(nothing was changed). Run: sudo go test -run '^$' -bench BenchmarkLink ./internal/proxy")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Fatalf("BenchmarkLink needs %s (iproute2): %v", tool, err)
		}
	}
	removeStaleLinkNets(b)
	ln := &linkNet{
		cli: fmt.Sprintf("%s%d-cli", linkPrefix, os.Getpid()),
		mid: fmt.Sprintf("%s%d-mid", linkPrefix, os.Getpid()),
		srv: fmt.Sprintf("%s%d-srv", linkPrefix, os.Getpid()),
	}
	// Remove everything on the way out, also when interrupted.
	var once sync.Once
	cleanup := func() { once.Do(ln.remove) }
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	stopSig := make(chan struct{})
	go func() {
		select {
		case s := <-sigc:
			cleanup()
			fmt.Fprintf(os.Stderr, "BenchmarkLink: %v: namespaces removed\n", s)
			os.Exit(1)
		case <-stopSig:
		}
	}()
	b.Cleanup(func() { signal.Stop(sigc); close(stopSig); cleanup() })
	if err := ln.build(); err != nil {
		b.Fatal(err)
	}

	// The sink: counts bytes to EOF then acks with one byte; or echoes
	// when the first byte is 'e'.
	sinkLn, err := netnsListen(ln.srv, "198.18.1.2:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sinkLn.Close()
	go serveLinkSink(sinkLn)
	sink := sinkLn.Addr().String()

	logFile, err := os.Create(filepath.Join(b.TempDir(), "access.log"))
	if err != nil {
		b.Fatal(err)
	}
	alog := logbuf.New(logFile, logbuf.Config{})
	srv, err := New(Config{
		// The command's defaults, plus the one allowance the benchmark
		// range needs: 198.18/15 is refused by default.
		Allow:  []netip.Prefix{netip.MustParsePrefix("198.18.1.0/30")},
		Logger: slog.New(slog.NewJSONHandler(alog, nil)),
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := netnsDo(ln.mid, func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	pln, err := netnsListen(ln.mid, "198.18.0.2:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(pln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		alog.Close()
		logFile.Close()
	}()
	proxyAddr := pln.Addr().String()

	kinds := []tunnelKind{kindDirect, kindConnect, kindSOCKS5}
	for _, rate := range []int{1, 5} {
		if err := ln.shape(rate); err != nil {
			b.Fatal(err)
		}
		// ~2 s of stream per run at the link's rate.
		size := int64(rate) * 250 << 20
		mbps := map[tunnelKind][]float64{}
		for round := range b.N {
			for i := range kinds {
				k := kinds[(round+i)%len(kinds)]
				v, err := linkStream(ln.cli, k, proxyAddr, sink, size)
				if err != nil {
					b.Fatalf("%dgbit %s: %v", rate, k, err)
				}
				mbps[k] = append(mbps[k], v)
			}
		}
		lat := map[tunnelKind][]time.Duration{}
		for i := range kinds {
			k := kinds[i]
			l, err := linkEcho(ln.cli, k, proxyAddr, sink, 2000)
			if err != nil {
				b.Fatalf("%dgbit %s echo: %v", rate, k, err)
			}
			lat[k] = l
		}
		tag := strconv.Itoa(rate) + "gbit-"
		direct := median(mbps[kindDirect])
		b.ReportMetric(direct, tag+"direct-Mbit/s")
		dp99 := pct(lat[kindDirect], 99)
		b.ReportMetric(float64(dp99.Microseconds()), tag+"direct-echo-p99-µs")
		for _, k := range kinds[1:] {
			m := median(mbps[k])
			b.ReportMetric(m, tag+string(k)+"-Mbit/s")
			b.ReportMetric(m/direct, tag+string(k)+"/direct")
			b.ReportMetric(float64(pct(lat[k], 50).Microseconds()), tag+string(k)+"-echo-p50-µs")
			b.ReportMetric(float64(pct(lat[k], 99).Microseconds()), tag+string(k)+"-echo-p99-µs")
			b.ReportMetric(float64((pct(lat[k], 99) - dp99).Microseconds()), tag+string(k)+"-added-p99-µs")
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func pct(v []time.Duration, p int) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// build creates the namespaces, the two veth pairs (inside them) and the
// addresses and routes.
func (ln *linkNet) build() error {
	steps := [][]string{
		{"netns", "add", ln.cli},
		{"netns", "add", ln.mid},
		{"netns", "add", ln.srv},
		// Created inside a namespace, with the peer in another: the
		// host's namespace never holds these links, even for a moment.
		{"-n", ln.cli, "link", "add", "c0", "type", "veth", "peer", "name", "m0", "netns", ln.mid},
		{"-n", ln.mid, "link", "add", "m1", "type", "veth", "peer", "name", "s0", "netns", ln.srv},
		{"-n", ln.cli, "addr", "add", "198.18.0.1/30", "dev", "c0"},
		{"-n", ln.mid, "addr", "add", "198.18.0.2/30", "dev", "m0"},
		{"-n", ln.mid, "addr", "add", "198.18.1.1/30", "dev", "m1"},
		{"-n", ln.srv, "addr", "add", "198.18.1.2/30", "dev", "s0"},
		{"-n", ln.cli, "link", "set", "lo", "up"},
		{"-n", ln.mid, "link", "set", "lo", "up"},
		{"-n", ln.srv, "link", "set", "lo", "up"},
		{"-n", ln.cli, "link", "set", "c0", "up"},
		{"-n", ln.mid, "link", "set", "m0", "up"},
		{"-n", ln.mid, "link", "set", "m1", "up"},
		{"-n", ln.srv, "link", "set", "s0", "up"},
		{"-n", ln.cli, "route", "add", "198.18.1.0/30", "via", "198.18.0.2"},
		{"-n", ln.srv, "route", "add", "198.18.0.0/30", "via", "198.18.1.1"},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	// The middle namespace routes the direct stream; this sysctl is the
	// namespace's own (net.ipv4 is per network namespace).
	return netnsDo(ln.mid, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0)
	})
}

// shape puts (or replaces) a tbf of rate Gbit/s on all four veth ends.
// The burst is 1 ms at the rate (at least 64 KiB), so a GSO super-packet
// passes without being split and the average is the rate.
func (ln *linkNet) shape(gbit int) error {
	burst := max(64<<10, gbit*125_000_000/1000)
	for _, d := range [][2]string{{ln.cli, "c0"}, {ln.mid, "m0"}, {ln.mid, "m1"}, {ln.srv, "s0"}} {
		args := []string{"-n", d[0], "qdisc", "replace", "dev", d[1], "root", "tbf",
			"rate", strconv.Itoa(gbit) + "gbit", "burst", strconv.Itoa(burst), "latency", "10ms"}
		if out, err := exec.Command("tc", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// remove deletes the namespaces; their links and addresses go with them.
func (ln *linkNet) remove() {
	for _, ns := range []string{ln.cli, ln.mid, ln.srv} {
		exec.Command("ip", "netns", "del", ns).Run()
	}
}

// removeStaleLinkNets deletes namespaces of earlier runs whose process is
// gone (a run killed with SIGKILL cannot clean up after itself).
func removeStaleLinkNets(b *testing.B) {
	names, _ := os.ReadDir("/run/netns")
	for _, n := range names {
		rest, ok := strings.CutPrefix(n.Name(), linkPrefix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(rest, "-")[0])
		if err != nil {
			continue
		}
		if unix.Kill(pid, 0) == unix.ESRCH {
			b.Logf("removing stale namespace %s", n.Name())
			exec.Command("ip", "netns", "del", n.Name()).Run()
		}
	}
}

// netnsDo runs fn on an OS thread switched into the named namespace.
// Sockets created there stay in it; the thread is switched back before it
// is released (or, if that fails, dies with its goroutine).
func netnsDo(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func netnsListen(ns, addr string) (net.Listener, error) {
	var l net.Listener
	err := netnsDo(ns, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// serveLinkSink: a connection whose first byte is 's' is a stream (the
// next 8 bytes its length; read that much, ack with one byte); 'e' is an
// echo (every byte sent back).
func serveLinkSink(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			var h [1]byte
			if _, err := io.ReadFull(c, h[:]); err != nil {
				return
			}
			if h[0] == 'e' {
				io.Copy(c, c)
				return
			}
			var n [8]byte
			if _, err := io.ReadFull(c, n[:]); err != nil {
				return
			}
			if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint64(n[:]))); err != nil {
				return
			}
			c.Write([]byte{1})
		}()
	}
}

// linkDial opens a connection from the client namespace to the sink,
// directly or through the proxy.
func linkDial(cliNS string, k tunnelKind, proxyAddr, sink string) (*net.TCPConn, error) {
	var c *net.TCPConn
	err := netnsDo(cliNS, func() error {
		var err error
		c, err = openTunnel(k, proxyAddr, sink)
		return err
	})
	return c, err
}

// linkStream sends size bytes to the sink and returns Mbit/s, timed from
// the first byte to the sink's ack of the last.
func linkStream(cliNS string, k tunnelKind, proxyAddr, sink string, size int64) (float64, error) {
	c, err := linkDial(cliNS, k, proxyAddr, sink)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	var h [9]byte
	h[0] = 's'
	binary.BigEndian.PutUint64(h[1:], uint64(size))
	start := time.Now()
	if _, err := c.Write(h[:]); err != nil {
		return 0, err
	}
	buf := make([]byte, 256<<10)
	for left := size; left > 0; {
		n := int64(len(buf))
		if left < n {
			n = left
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return 0, err
		}
		left -= n
	}
	var ack [1]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return 0, fmt.Errorf("ack: %w", err)
	}
	return float64(size) * 8 / time.Since(start).Seconds() / 1e6, nil
}

// linkEcho times n 1-byte round trips over one open connection.
func linkEcho(cliNS string, k tunnelKind, proxyAddr, sink string, n int) ([]time.Duration, error) {
	c, err := linkDial(cliNS, k, proxyAddr, sink)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetNoDelay(true)
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write([]byte{'e'}); err != nil {
		return nil, err
	}
	lat := make([]time.Duration, 0, n)
	var b [1]byte
	for range n {
		t0 := time.Now()
		if _, err := c.Write([]byte{'x'}); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}
