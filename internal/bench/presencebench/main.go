// Command presencebench measures what presence costs on the Redis engine:
// n members connecting at once to one channel (the join/leave storm, seen
// by a few watchers that asked for joins and leaves), then the steady
// state with n members present: Redis commands per second (INFO
// commandstats before and after) and the hub's CPU (/proc/PID/stat). It
// drives duplex (WebSocket, presence on the channel) or Centrifugo (its
// JSON protocol, presence and join_leave on) the same way, for the anchor
// row of docs/benchmarks.md. It is a measuring tool, not a test.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

func main() {
	target := flag.String("target", "duplex", "duplex or centrifugo")
	addr := flag.String("addr", "127.0.0.1:18080", "hub address")
	redisAddr := flag.String("redis", "127.0.0.1:16379", "the hub's Redis")
	pid := flag.Int("pid", 0, "the hub's PID, for its CPU")
	n := flag.Int("n", 10000, "members")
	watchers := flag.Int("watchers", 10, "subscribers that get the joins and leaves")
	steady := flag.Duration("steady", 30*time.Second, "steady-state window")
	channel := flag.String("channel", "room:bench", "channel")
	flag.Parse()

	b := &bench{target: *target, addr: *addr, channel: *channel}
	ctx := context.Background()
	var ws []*watcher
	for range *watchers {
		w, err := b.watch(ctx)
		if err != nil {
			fail(err)
		}
		ws = append(ws, w)
	}
	// Storm: n members at once.
	resetStats(*redisAddr)
	cpu0 := cpuSeconds(*pid)
	start := time.Now()
	var conns sync.WaitGroup
	var failed atomic.Int64
	members := make([]*websocket.Conn, *n)
	sem := make(chan struct{}, 512) // connects in flight, so the dialer's own port range is not the bound
	for i := range *n {
		conns.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := b.join(ctx, false)
			if err != nil {
				failed.Add(1)
				return
			}
			members[i] = c
		})
	}
	conns.Wait()
	for _, w := range ws {
		w.waitJoins(int64(*n - int(failed.Load())))
	}
	b.waitClients(*redisAddr, int64(*n-int(failed.Load())+*watchers))
	storm := time.Since(start)
	stormCPU := cpuSeconds(*pid) - cpu0
	stormCmds := commandStats(*redisAddr)
	fmt.Printf("storm: %d members (%d failed) joined, every watcher saw every join and Redis holds them all, in %v; hub CPU %.2fs; Redis %s\n",
		*n-int(failed.Load()), failed.Load(), storm.Round(time.Millisecond), stormCPU, stormCmds)

	// Steady state.
	resetStats(*redisAddr)
	cpu0 = cpuSeconds(*pid)
	time.Sleep(*steady)
	cpu := cpuSeconds(*pid) - cpu0
	cmds := commandStats(*redisAddr)
	fmt.Printf("steady: %v with %d members: hub CPU %.3fs (%.2f%% of a core); Redis %s (%.1f commands/s)\n",
		*steady, *n, cpu, 100*cpu/steady.Seconds(), cmds, float64(cmds.total)/steady.Seconds())

	// Leave storm.
	for _, w := range ws {
		w.leaves.Store(0)
	}
	resetStats(*redisAddr)
	cpu0 = cpuSeconds(*pid)
	start = time.Now()
	for _, c := range members {
		if c != nil {
			c.CloseNow()
		}
	}
	for _, w := range ws {
		w.waitLeaves(int64(*n - int(failed.Load())))
	}
	b.waitClients(*redisAddr, int64(*watchers))
	fmt.Printf("leave storm: every watcher saw %d leaves and Redis holds none, in %v; hub CPU %.2fs; Redis %s\n",
		*n-int(failed.Load()), time.Since(start).Round(time.Millisecond), cpuSeconds(*pid)-cpu0, commandStats(*redisAddr))
}

type bench struct {
	target, addr, channel string
}

// waitClients waits until Redis holds n members of the channel: the
// subscribe replies come before the members are in Redis, on both hubs.
func (b *bench) waitClients(redisAddr string, n int64) {
	key := "duplex:{" + b.channel + "}:pm"
	cmd := "HLEN"
	if b.target == "centrifugo" {
		key, cmd = "centrifugo.presence.data."+b.channel, "HLEN"
	}
	for {
		line := strings.TrimSpace(redisDo(redisAddr, cmd, key))
		got, _ := strconv.ParseInt(strings.TrimPrefix(line, ":"), 10, 64)
		if got == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type watcher struct {
	joins, leaves atomic.Int64
}

func (w *watcher) waitJoins(n int64) {
	for w.joins.Load() < n {
		time.Sleep(5 * time.Millisecond)
	}
}

func (w *watcher) waitLeaves(n int64) {
	for w.leaves.Load() < n {
		time.Sleep(5 * time.Millisecond)
	}
}

// join opens one connection subscribed to the channel.
func (b *bench) join(ctx context.Context, joinLeave bool) (*websocket.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var cmds []string
	url := "ws://" + b.addr + "/v1/ws"
	if b.target == "centrifugo" {
		url = "ws://" + b.addr + "/connection/websocket"
		jl := ""
		if joinLeave {
			jl = `,"join_leave":true`
		}
		cmds = []string{`{"id":1,"connect":{}}`, `{"id":2,"subscribe":{"channel":"` + b.channel + `"` + jl + `}}`}
	} else {
		cmds = []string{`{"id":1,"type":"subscribe","channel":"` + b.channel + `","join_leave":` + strconv.FormatBool(joinLeave) + `}`}
	}
	c, _, err := websocket.Dial(dctx, url, nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(-1)
	for _, cmd := range cmds {
		if err := c.Write(dctx, websocket.MessageText, []byte(cmd)); err != nil {
			return nil, err
		}
	}
	// Wait for the subscribe's reply; a member reads nothing else.
	for {
		_, m, err := c.Read(dctx)
		if err != nil {
			return nil, err
		}
		s := string(m)
		if b.target == "centrifugo" && strings.Contains(s, `"id":2`) || b.target != "centrifugo" && strings.Contains(s, `"id":1`) {
			if strings.Contains(s, "error") {
				return nil, fmt.Errorf("subscribe: %s", s)
			}
			break
		}
	}
	if !joinLeave {
		go func() {
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}()
	}
	return c, nil
}

// watch opens a subscriber that counts joins and leaves.
func (b *bench) watch(ctx context.Context) (*watcher, error) {
	c, err := b.join(ctx, true)
	if err != nil {
		return nil, err
	}
	w := &watcher{}
	go func() {
		for {
			_, m, err := c.Read(ctx)
			if err != nil {
				return
			}
			// Centrifugo may batch pushes, one JSON object a line.
			for _, line := range strings.Split(string(m), "\n") {
				switch {
				case strings.Contains(line, `"type":"join"`), strings.Contains(line, `"join":{`):
					w.joins.Add(1)
				case strings.Contains(line, `"type":"leave"`), strings.Contains(line, `"leave":{`):
					w.leaves.Add(1)
				}
			}
		}
	}()
	return w, nil
}

// cpuSeconds is the user+system CPU of pid so far.
func cpuSeconds(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100 // USER_HZ
}

// redisDo sends one command and returns the raw reply text.
func redisDo(addr string, args ...string) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fail(err)
	}
	defer c.Close()
	var sb strings.Builder
	fmt.Fprintf(&sb, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&sb, "$%d\r\n%s\r\n", len(a), a)
	}
	c.Write([]byte(sb.String()))
	r := bufio.NewReader(c)
	line, _ := r.ReadString('\n')
	if strings.HasPrefix(line, "$") {
		n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
		buf := make([]byte, n+2)
		_, err := ioReadFull(r, buf)
		if err != nil {
			fail(err)
		}
		return string(buf[:n])
	}
	return line
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func resetStats(addr string) { redisDo(addr, "CONFIG", "RESETSTAT") }

type cmdStats struct {
	total int64
	calls map[string]int64
}

func (s cmdStats) String() string {
	b, _ := json.Marshal(s.calls)
	return fmt.Sprintf("%d commands %s", s.total, b)
}

// commandStats reads INFO commandstats (the INFO call itself excluded).
func commandStats(addr string) cmdStats {
	out := cmdStats{calls: map[string]int64{}}
	for _, line := range strings.Split(redisDo(addr, "INFO", "commandstats"), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_")
		if !ok {
			continue
		}
		name, rest, _ := strings.Cut(rest, ":calls=")
		v, _, _ := strings.Cut(rest, ",")
		n, _ := strconv.ParseInt(v, 10, 64)
		if name == "info" || name == "config|resetstat" {
			continue
		}
		out.calls[name] = n
		out.total += n
	}
	return out
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "presencebench:", err)
	os.Exit(1)
}
