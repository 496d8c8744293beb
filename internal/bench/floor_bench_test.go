//go:build linux

package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// floorClientEnv makes the test binary a floor client (see
// BenchmarkLoopbackWriteFloor): "address,connections".
const floorClientEnv = "DUPLEX_BENCH_FLOOR_CLIENT"

func TestMain(m *testing.M) {
	if v := os.Getenv(floorClientEnv); v != "" {
		runFloorClient(v)
		return
	}
	os.Exit(m.Run())
}

// runFloorClient opens the connections, prints "ready", reads everything
// they bring, and exits when stdin closes.
func runFloorClient(v string) {
	addr, ns, _ := strings.Cut(v, ",")
	n, _ := strconv.Atoi(ns)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor client:", err)
			os.Exit(1)
		}
		go func() {
			b := make([]byte, 4096)
			for {
				if _, err := c.Read(b); err != nil {
					return
				}
			}
		}()
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}

// BenchmarkLoopbackWriteFloor measures what one write(2) per delivery costs
// on this machine, whatever the hub: 120 bytes written to each of 1,000
// loopback TCP connections, 100 times a second for 10 s — the shape of
// BenchmarkWSFanout's 1,000 × 100 point — from a bare loop with
// non-blocking writes, the reader in another process. It reports this
// process's CPU seconds per million writes: the floor for a hub that writes
// each delivery on its own. Run with -benchtime 1x.
func BenchmarkLoopbackWriteFloor(b *testing.B) {
	const conns, rounds = 1000, 1000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), floorClientEnv+"="+ln.Addr().String()+","+strconv.Itoa(conns))
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	raws := make([]syscall.RawConn, 0, conns)
	for range conns {
		c, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		raw, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		raws = append(raws, raw)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("floor client: %q %v", line, err)
	}
	payload := make([]byte, 120)
	var failed int
	b.ResetTimer()
	cpu0 := selfCPU()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for range rounds {
		<-tick.C
		for _, raw := range raws {
			raw.Write(func(fd uintptr) bool {
				if n, err := syscall.Write(int(fd), payload); err != nil || n != len(payload) {
					failed++
				}
				return true
			})
		}
	}
	cpu := selfCPU() - cpu0
	b.StopTimer()
	if failed > 0 {
		b.Fatalf("%d writes did not go through whole", failed)
	}
	b.ReportMetric(cpu.Seconds()/(conns*rounds)*1e6, "cpu-s/1M-writes")
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
