package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
)

// esReport is one line of e2e/node/stream_eventsource.js.
type esReport struct {
	Ev         string `json:"ev"`
	Opens      int    `json:"opens"`
	Offset     uint64 `json:"offset"`
	Next       uint64 `json:"next"`
	Epoch      string `json:"epoch"`
	ID         string `json:"id"`
	ReadyState int    `json:"readyState"`
}

// browserES runs chromium with an EventSource on channel and streams its
// reports.
type browserES struct {
	t       *testing.T
	cmd     *exec.Cmd
	reports chan esReport
	stderr  *strings.Builder
	seen    []esReport
}

func startBrowserES(t *testing.T, hubURL, channel string, want int) *browserES {
	t.Helper()
	needBin(t, "node", "/usr/bin/chromium")
	if out, err := exec.Command("node", "-e", "require.resolve('./node/node_modules/playwright-core')").CombinedOutput(); err != nil {
		t.Fatalf("npm playwright-core missing in e2e/node: run ./scripts/test (or npm ci in e2e/node): %v %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	b := &browserES{t: t, reports: make(chan esReport, 1024), stderr: &strings.Builder{}}
	b.cmd = exec.CommandContext(ctx, "node", "node/stream_eventsource.js", hubURL, channel, fmt.Sprint(want))
	b.cmd.Stderr = b.stderr
	out, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(b.reports)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r esReport
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Errorf("stream_eventsource.js printed %q", sc.Text())
				continue
			}
			b.reports <- r
		}
	}()
	t.Cleanup(func() {
		b.cmd.Process.Kill() // our own child, by PID; a no-op once it exited
		for range b.reports {
		}
		b.cmd.Wait()
	})
	return b
}

// waitFor reads reports until ok says so; it fails t if the script ends.
func (b *browserES) waitFor(what string, ok func(esReport) bool) {
	b.t.Helper()
	for r := range b.reports {
		b.seen = append(b.seen, r)
		if ok(r) {
			return
		}
	}
	b.cmd.Wait()
	b.t.Fatalf("browser ended before %s; reports %+v\nstderr: %s", what, b.seen, b.stderr.String())
}

func (b *browserES) messages() []esReport {
	var m []esReport
	for _, r := range b.seen {
		if r.Ev == "message" || r.Ev == "gap" {
			m = append(m, r)
		}
	}
	return m
}

func (b *browserES) opens() int {
	n := 0
	for _, r := range b.seen {
		if r.Ev == "open" {
			n = r.Opens
		}
	}
	return n
}

// TestStreamBrowserEventSourceResumesAcrossRestart: chromium's own
// EventSource receives messages; the hub's HTTP server is stopped (every
// connection dropped, the listener closed) while messages keep being
// published, and started again on the same port. The browser reconnects by
// itself with Last-Event-ID and gets every message once, in order.
//
// The hub.Hub (its engine and history) lives on across the restart, as
// history does across a process restart with the Redis engine; with the
// memory engine a process restart loses history, which the next test
// covers.
//
// It keeps the memory engine on DUPLEX_TEST_ENGINE=redis: the hub.Hub
// outliving its server is this test's stand-in for shared history; the
// Redis run of a real process restart is in the failover tests.
func TestStreamBrowserEventSourceResumesAcrossRestart(t *testing.T) {
	hubtest.CheckLeaks(t)
	hb, err := hub.New(context.Background(), hub.Config{Engine: memory.New(memory.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Hub: hb, SSERetry: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	// serve serves ln until stop, which closes the listener and every
	// connection accepted, streams included, as a dying process would.
	serve := func(ln net.Listener) (stop func()) {
		tl := &trackingListener{Listener: ln, conns: map[net.Conn]bool{}}
		hs := &http.Server{Handler: srv.Handler()}
		done := make(chan error, 1)
		go func() { done <- hs.Serve(tl) }()
		return func() {
			hs.Close()
			tl.closeAll()
			if err := <-done; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serve: %v", err)
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	stop := serve(ln)
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	url := "http://" + addr

	const channel, n = "browser-restart", 50
	b := startBrowserES(t, url, channel, 3*n)
	b.waitFor("open", func(r esReport) bool { return r.Ev == "open" })
	for i := 1; i <= n; i++ {
		postMessage(t, hc, url, channel, i)
	}
	b.waitFor("message 50", func(r esReport) bool { return r.Ev == "message" && r.Offset == n })

	stop() // the hub's HTTP side is gone: connections dropped, port closed
	hc.CloseIdleConnections()
	for i := n + 1; i <= 2*n; i++ { // published while the browser is cut off
		if _, err := hb.Publish(context.Background(), channel, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	ln, err = net.Listen("tcp", addr) // the same port
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	stop = serve(ln)
	defer stop()
	b.waitFor("the browser's reconnect", func(r esReport) bool { return r.Ev == "open" && r.Opens == 2 })
	for i := 2*n + 1; i <= 3*n; i++ {
		postMessage(t, hc, url, channel, i)
	}
	b.waitFor("done", func(r esReport) bool { return r.Ev == "done" })

	msgs := b.messages()
	if len(msgs) != 3*n {
		t.Fatalf("browser got %d messages, want %d: %+v", len(msgs), 3*n, msgs)
	}
	epoch := msgs[0].Epoch
	for i, m := range msgs {
		want := uint64(i + 1)
		if m.Ev != "message" || m.Offset != want || m.Epoch != epoch || m.ID != fmt.Sprintf("%s:%s:%d", channel, epoch, want) {
			t.Fatalf("message %d: %+v, want offset %d once, in order, with its cursor as id", i, m, want)
		}
	}
	if b.opens() != 2 {
		t.Errorf("%d opens, want 2 (one reconnect, by the browser)", b.opens())
	}
}

// trackingListener remembers the connections it accepted, so a test can
// drop them all (net/http does not close the streams it handed over).
type trackingListener struct {
	net.Listener
	mu    sync.Mutex // guards conns
	conns map[net.Conn]bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns[c] = true
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Close()
	}
}

// TestStreamBrowserEventSourceAcrossHubProcessRestart: a whole memory-engine
// hub is stopped and a new one started on the same port. History is gone
// and the channel has a new epoch; the browser's reconnect carries its old
// cursor, so it gets a gap notice naming the new epoch, then the new
// messages, none twice.
func TestStreamBrowserEventSourceAcrossHubProcessRestart(t *testing.T) {
	hubtest.CheckLeaks(t)
	opts := &hubtest.Options{Server: server.Config{SSERetry: 200 * time.Millisecond}}
	h, err := hubtest.StartE(opts)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	const channel, n = "browser-hub-restart", 20
	b := startBrowserES(t, h.URL, channel, 2*n)
	b.waitFor("open", func(r esReport) bool { return r.Ev == "open" })
	for i := 1; i <= n; i++ {
		postMessage(t, hc, h.URL, channel, i)
	}
	b.waitFor("message 20", func(r esReport) bool { return r.Ev == "message" && r.Offset == n })
	h.Stop(t) // ends the stream cleanly; the browser reconnects by itself
	hc.CloseIdleConnections()
	ln, err := net.Listen("tcp", h.Addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", h.Addr, err)
	}
	opts.Listener = ln
	h2, err := hubtest.StartE(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Stop(t)
	for i := 1; i <= n; i++ {
		postMessage(t, hc, h2.URL, channel, i)
	}
	b.waitFor("done", func(r esReport) bool { return r.Ev == "done" })

	msgs := b.messages()
	if len(msgs) != 2*n+1 {
		t.Fatalf("browser got %+v, want %d messages and a gap", msgs, 2*n)
	}
	e1, gap, e2 := msgs[0].Epoch, msgs[n], msgs[n+1].Epoch
	if e1 == e2 || gap.Ev != "gap" || gap.Epoch != e2 || gap.Next != 1 || gap.ID != channel+":"+e2+":0" {
		t.Fatalf("after the restart got %+v, want a gap to %s:1", gap, e2)
	}
	for i, m := range append(msgs[:n:n], msgs[n+1:]...) {
		want := uint64(i%n + 1)
		if m.Ev != "message" || m.Offset != want {
			t.Fatalf("message %d: %+v, want offset %d", i, m, want)
		}
	}
}
