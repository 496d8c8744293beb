package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/engine/redis"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/redistest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

// The demo page's panes, as its URL names them (transports=…).
var demoKinds = []string{"ws", "sse", "ndjson", "poll", "rest"}

// TestWebDemoHistoryThenLive: every pane of the demo page (and an "auto"
// one) receives the history it asked for (from=0) and then messages
// published with the page's own publish form, each once, in order; auto
// settles on the WebSocket.
func TestWebDemoHistoryThenLive(t *testing.T) {
	h := hubtest.Start(t, nil)
	const channel, before, live = "history", 5, 10
	hc := &http.Client{}
	for n := 1; n <= before; n++ {
		postMessage(t, hc, h.URL, channel, n)
	}
	p := startDemoPage(t)
	kinds := append(append([]string{}, demoKinds...), "auto")
	p.open(fmt.Sprintf("%s/?channel=%s&from=0&interval=0.5&transports=%s", h.URL, channel, strings.Join(kinds, ",")), 1280, 800)
	p.waitPanes(fmt.Sprintf("p.offsets.length >= %d", before), 30*time.Second)
	for i := range live {
		p.fill("#publish input[name=data]", fmt.Sprintf(`{"live":%d}`, i))
		p.click("#publish button")
		p.wait(fmt.Sprintf(`document.getElementById('status').textContent === 'published offset %d'`, before+i+1), 10*time.Second)
	}
	p.waitPanes(fmt.Sprintf("p.offsets.length >= %d", before+live), 30*time.Second)
	views := p.panes()
	for _, k := range kinds {
		v := views[k]
		v.expectClean(t, k, 1, before+live)
		want := k
		if k == "auto" {
			want = "ws"
		}
		if v.Stats.Transport != want {
			t.Errorf("%s pane: transport %q, want %q", k, v.Stats.Transport, want)
		}
	}
}

// TestWebDemoAutoFallsBackToSSE: only a foreign origin is allowed, so the
// page's WebSocket upgrade is refused (origin check) while its same-origin
// EventSource is not: the auto pane lands on SSE and receives history,
// then live messages, once, in order.
func TestWebDemoAutoFallsBackToSSE(t *testing.T) {
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{AllowedOrigins: []string{"https://elsewhere.example"}}})
	const channel, before, live = "fallback", 5, 10
	hc := &http.Client{}
	for n := 1; n <= before; n++ {
		postMessage(t, hc, h.URL, channel, n)
	}
	p := startDemoPage(t)
	p.allowNetworkErrors = true // the refused upgrades, logged by chromium itself
	p.open(fmt.Sprintf("%s/?channel=%s&from=0&transports=auto", h.URL, channel), 1280, 800)
	p.waitPanes(fmt.Sprintf("p.offsets.length >= %d", before), 60*time.Second)
	for n := before + 1; n <= before+live; n++ {
		postMessage(t, hc, h.URL, channel, n)
	}
	p.waitPanes(fmt.Sprintf("p.offsets.length >= %d", before+live), 30*time.Second)
	v := p.panes()["auto"]
	v.expectClean(t, "auto", 1, before+live)
	if v.Transport != "sse" {
		t.Errorf("auto pane used %q, want sse", v.Transport)
	}
}

// TestWebDemoBurst: the page's burst control (driven from the keyboard)
// publishes 500 messages while every pane's connection is cut once; each
// pane receives all 500 in order with nothing lost or repeated, and its
// counters say so; the request/response pane is answered 304 once the
// channel is idle. Screenshots at laptop and phone sizes (and the laptop
// in dark mode) are kept (path in the log), and the layout is checked at each: five panes in a row, then
// stacked, with nothing wider than the screen.
func TestWebDemoBurst(t *testing.T) {
	h := hubtest.Start(t, nil)
	p := startDemoPage(t)
	p.open(h.URL+"/?channel=burst&interval=1", 1280, 800)
	p.waitPanes(panesStarted, 30*time.Second)
	const n = 500
	p.fill("#burst input[name=count]", n)
	p.fill("#burst input[name=rate]", 250)
	p.press("#burst input[name=rate]", "Enter")
	// Mid-burst: cut every pane once.
	p.wait("window.duplexDemo.panes.ws.offsets.length >= 150", 30*time.Second)
	for _, k := range demoKinds {
		p.press("#pane-"+k+" .cut", "Enter")
	}
	p.wait("window.duplexDemo.bursts === 1", 60*time.Second)
	p.waitPanes(fmt.Sprintf("p.offsets.length >= %d", n), 60*time.Second)
	p.wait("window.duplexDemo.panes.rest.stats().notModified >= 1", 30*time.Second)
	views := p.panes()
	for _, k := range demoKinds {
		v := views[k]
		v.expectClean(t, k, 1, n)
		s := v.Stats
		if s.Messages != n || s.Requests <= 0 || s.Bytes <= 0 || s.Reconnects < 1 {
			t.Errorf("%s pane: stats %+v, want %d messages, requests and bytes > 0, a reconnect for the cut", k, s, n)
		}
		if v.Latency.P50 == nil || v.Latency.P99 == nil || *v.Latency.P99 < *v.Latency.P50 {
			t.Errorf("%s pane: latency %+v", k, v.Latency)
		}
	}
	if views["rest"].Stats.NotModified < 1 {
		t.Errorf("rest pane never saw a 304: %+v", views["rest"].Stats)
	}
	if text := p.evalString("document.querySelector('#pane-ws .check').textContent"); !strings.HasPrefix(text, "0 lost, 0 duplicated") {
		t.Errorf("ws pane says %q", text)
	}

	dir, err := os.MkdirTemp("", "duplex-web-demo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	fmt.Printf("web demo screenshots: %s\n", dir)
	shots := []struct {
		size   [2]int
		scheme string
	}{{[2]int{1280, 800}, "light"}, {[2]int{390, 844}, "light"}, {[2]int{1280, 800}, "dark"}}
	for _, shot := range shots {
		size := shot.size
		path := filepath.Join(dir, fmt.Sprintf("demo-%dx%d-%s.png", size[0], size[1], shot.scheme))
		p.call(map[string]any{"cmd": "screenshot", "path": path, "width": size[0], "height": size[1], "scheme": shot.scheme})
		if st, err := os.Stat(path); err != nil || st.Size() == 0 {
			t.Errorf("screenshot %s: %v", path, err)
		}
		var layout struct {
			Rows       int  `json:"rows"`
			Panes      int  `json:"panes"`
			Overflowed bool `json:"overflowed"`
		}
		p.eval(`(() => {
			const tops = new Set([...document.querySelectorAll('.pane')].map((e) => Math.round(e.getBoundingClientRect().top)));
			return { rows: tops.size, panes: document.querySelectorAll('.pane').length,
				overflowed: document.documentElement.scrollWidth > window.innerWidth };
		})()`, &layout)
		wantRows := 1
		if size[0] < 600 {
			wantRows = layout.Panes
		}
		if layout.Panes != len(demoKinds) || layout.Rows != wantRows || layout.Overflowed {
			t.Errorf("at %dx%d: %+v, want %d panes in %d rows, none wider than the screen", size[0], size[1], layout, len(demoKinds), wantRows)
		}
	}
}

// TestWebDemoHubRestartRedis: the hub is stopped mid-burst and started
// again on the same port over the same Redis, which kept the channel's
// history: every pane resumes and reports all 500 messages, 0 lost, 0
// duplicated, and no gap.
func TestWebDemoHubRestartRedis(t *testing.T) {
	srv := redistest.Start(t, nil)
	engine := func() *redis.Engine {
		e, err := redis.New(redis.Config{URL: srv.URL(), Prefix: "webdemo"})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	h1, err := hubtest.StartE(&hubtest.Options{Engine: engine()})
	if err != nil {
		t.Fatal(err)
	}
	const channel = "restart"
	p, hc := demoUntilStopped(t, h1, channel, 250)
	h2 := restartOn(t, h1.Addr, &hubtest.Options{Engine: engine()})
	for n := 251; n <= 500; n++ {
		postMessage(t, hc, h2.URL, channel, n)
	}
	p.waitPanes("p.offsets.length >= 500", 90*time.Second)
	views := p.panes()
	for _, k := range demoKinds {
		v := views[k]
		v.expectClean(t, k, 1, 500)
		if v.Gaps != 0 {
			t.Errorf("%s pane: %d gaps, but Redis kept every message", k, v.Gaps)
		}
		if k != "rest" && k != "poll" && v.Stats.Reconnects < 1 {
			t.Errorf("%s pane: %d reconnects across a hub restart", k, v.Stats.Reconnects)
		}
	}
}

// TestWebDemoHubRestartMemoryGap: the memory engine loses its history when
// the hub restarts, and the channel comes back with a new epoch. Every pane
// reports that as a gap (not as lost messages, and not silently), then
// receives the new epoch's messages once, in order. The memory engine is
// the point here, so the hubs use it whatever EngineEnv says.
func TestWebDemoHubRestartMemoryGap(t *testing.T) {
	h1, err := hubtest.StartE(&hubtest.Options{Engine: memory.New(memory.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	const channel = "amnesia"
	p, hc := demoUntilStopped(t, h1, channel, 40)
	h2 := restartOn(t, h1.Addr, &hubtest.Options{Engine: memory.New(memory.Config{})})
	const after = 30
	var last msg.Published
	for n := 1; n <= after; n++ {
		last = postMessage(t, hc, h2.URL, channel, n)
	}
	p.waitPanes(fmt.Sprintf("p.gaps >= 1 && p.epoch === %q && p.offsets.at(-1) === %d", last.Epoch, after), 90*time.Second)
	views := p.panes()
	for _, k := range demoKinds {
		v := views[k]
		if v.Lost != 0 || v.Duplicated != 0 || v.Unannounced != 0 || v.Gaps != 1 {
			t.Errorf("%s pane: %d lost, %d duplicated, %d unannounced epoch changes, %d gaps; want one gap and nothing else (%q)",
				k, v.Lost, v.Duplicated, v.Unannounced, v.Gaps, v.Check)
		}
		// 1…k of the first epoch (k ≥ 20: what arrived before the stop),
		// then 1…30 of the second.
		i := 0
		for i < len(v.Offsets) && v.Offsets[i] == uint64(i+1) {
			i++
		}
		first, second := v.Offsets[:i], v.Offsets[i:]
		if len(first) < 20 || len(first) > 40 || len(second) != after {
			t.Errorf("%s pane: offsets %v, want 1…k (20 ≤ k ≤ 40) then 1…%d", k, v.Offsets, after)
			continue
		}
		for j, o := range second {
			if o != uint64(j+1) {
				t.Errorf("%s pane: after the gap offsets %v, want 1…%d", k, second, after)
				break
			}
		}
		if !strings.Contains(v.Check, "gap") {
			t.Errorf("%s pane shows %q, want it to name the gap", k, v.Check)
		}
	}
}

// restartOn starts a hub on addr, where one was just stopped.
func restartOn(t *testing.T, addr string, opts *hubtest.Options) *hubtest.Hub {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	opts.Listener = ln
	return hubtest.Start(t, opts)
}

// panesStarted holds once every pane has made its first request. (Not
// "open": duplex.js calls a long poll open once its first answer came,
// which on an idle channel is the poll timeout later.)
const panesStarted = "p.stats().requests > 0 && p.state !== 'closed'"

// paneView is what window.duplexDemo.panes[kind] says of one pane.
type paneView struct {
	Stats struct {
		jsStats         // sub.stats(), as duplex.js gives it
		NotModified int `json:"notModified"` // the rest pane's 304s
	} `json:"stats"`
	Transport   string   `json:"transport"` // sub.transport, "" for rest
	Lost        int      `json:"lost"`
	Duplicated  int      `json:"duplicated"`
	Gaps        int      `json:"gaps"`
	Unannounced int      `json:"unannounced"`
	Offsets     []uint64 `json:"offsets"`
	Epoch       string   `json:"epoch"`
	Check       string   `json:"check"` // the pane's own words
	Latency     struct {
		Last, P50, P99 *float64
	} `json:"latency"`
}

// expectClean checks a pane received offsets from…to once each, in order,
// and says "0 lost, 0 duplicated".
func (v paneView) expectClean(t *testing.T, kind string, from, to int) {
	t.Helper()
	ok := len(v.Offsets) == to-from+1
	for i := 0; ok && i < len(v.Offsets); i++ {
		ok = v.Offsets[i] == uint64(from+i)
	}
	if !ok {
		t.Errorf("%s pane: offsets %v, want %d…%d once each, in order", kind, v.Offsets, from, to)
	}
	if v.Lost != 0 || v.Duplicated != 0 || v.Unannounced != 0 || !strings.HasPrefix(v.Check, "0 lost, 0 duplicated") {
		t.Errorf("%s pane: %d lost, %d duplicated, %d unannounced epoch changes (%q)", kind, v.Lost, v.Duplicated, v.Unannounced, v.Check)
	}
}

// demoPage is one chromium, driven by node/web_demo.js, showing the demo
// page. Every answer carries the page errors and console errors seen since
// the last one; any of them fails the test, except, with
// allowNetworkErrors, the ones chromium itself logs for a refused or

// demoUntilStopped opens the demo page on h1's channel, publishes 1..last
// (waiting until every pane has the first 20, so all are live), and stops
// h1 while the panes are still receiving. It returns the page and the
// client that published, its idle connections to h1 closed.
func demoUntilStopped(t *testing.T, h1 *hubtest.Hub, channel string, last int) (*demoPage, *http.Client) {
	t.Helper()
	p := startDemoPage(t)
	p.allowNetworkErrors = true // requests refused while the hub is down
	p.open(h1.URL+"/?channel="+channel+"&interval=1", 1280, 800)
	p.waitPanes(panesStarted, 30*time.Second)
	hc := &http.Client{}
	for n := 1; n <= 20; n++ {
		postMessage(t, hc, h1.URL, channel, n)
	}
	p.waitPanes("p.offsets.length >= 20", 30*time.Second)
	for n := 21; n <= last; n++ {
		postMessage(t, hc, h1.URL, channel, n)
	}
	h1.Stop(t)
	hc.CloseIdleConnections()
	return p, hc
}

// dropped connection (a hub restarting, an upgrade refused on purpose).
type demoPage struct {
	t                  *testing.T
	allowNetworkErrors bool

	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner

	mu     sync.Mutex // guards stderr
	stderr strings.Builder
}

// networkError matches what chromium logs on its own when a connection is
// refused or cut, as opposed to an error of the page's script.
var networkError = regexp.MustCompile(`net::ERR_|^Failed to load resource|^WebSocket connection to .* failed|^EventSource's response`)

func startDemoPage(t *testing.T) *demoPage {
	t.Helper()
	needPeer(t, "node", "/usr/bin/chromium")
	p := &demoPage{t: t, cmd: exec.Command("node", "node/web_demo.js")}
	var err error
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.stderr.Write(b)
	})
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewScanner(stdout)
	p.out.Buffer(make([]byte, 1<<16), 64<<20)
	t.Cleanup(func() {
		io.WriteString(p.in, `{"cmd":"quit"}`+"\n")
		p.in.Close()
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("web_demo.js: %v\n%s", err, p.stderrText())
			}
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill() // ours, by PID
			<-done
			t.Errorf("web_demo.js did not quit\n%s", p.stderrText())
		}
	})
	return p
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func (p *demoPage) stderrText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// call sends one command and returns its value; a failed command ends the
// test, with what the page's panes said at the time.
func (p *demoPage) call(cmd map[string]any) json.RawMessage {
	p.t.Helper()
	v, errText := p.try(cmd)
	if errText != "" {
		state, _ := p.try(map[string]any{"cmd": "eval", "expr": paneSummaryExpr})
		p.t.Fatalf("%v: %s\npanes: %s\nstderr: %s", cmd, errText, state, p.stderrText())
	}
	return v
}

func (p *demoPage) try(cmd map[string]any) (json.RawMessage, string) {
	p.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Sprintf("write to web_demo.js: %v", err)
	}
	if !p.out.Scan() {
		return nil, fmt.Sprintf("web_demo.js ended: %v", p.out.Err())
	}
	var ans struct {
		OK      bool            `json:"ok"`
		Value   json.RawMessage `json:"value"`
		Error   string          `json:"error"`
		Console []struct {
			Type, Text, URL string
		} `json:"console"`
	}
	if err := json.Unmarshal(p.out.Bytes(), &ans); err != nil {
		return nil, fmt.Sprintf("answer %q: %v", p.out.Bytes(), err)
	}
	for _, c := range ans.Console {
		if p.allowNetworkErrors && c.Type == "console" && networkError.MatchString(c.Text) {
			p.t.Logf("chromium (allowed here): %s", c.Text)
			continue
		}
		p.t.Errorf("page %s: %s (%s)", c.Type, c.Text, c.URL)
	}
	if !ans.OK {
		return nil, ans.Error
	}
	return ans.Value, ""
}

func (p *demoPage) open(url string, width, height int) {
	p.t.Helper()
	p.call(map[string]any{"cmd": "open", "url": url, "width": width, "height": height})
	p.wait("window.duplexDemo && window.duplexDemo.ready", 30*time.Second)
}

func (p *demoPage) wait(expr string, timeout time.Duration) {
	p.t.Helper()
	p.call(map[string]any{"cmd": "wait", "expr": expr, "timeout": timeout.Milliseconds()})
}

// waitPanes waits until cond holds for every pane p.
func (p *demoPage) waitPanes(cond string, timeout time.Duration) {
	p.t.Helper()
	p.wait("Object.values(window.duplexDemo.panes).every((p) => "+cond+")", timeout)
}

func (p *demoPage) fill(selector string, value any) {
	p.t.Helper()
	p.call(map[string]any{"cmd": "fill", "selector": selector, "value": fmt.Sprint(value)})
}

func (p *demoPage) click(selector string) {
	p.t.Helper()
	p.call(map[string]any{"cmd": "click", "selector": selector})
}

func (p *demoPage) press(selector, key string) {
	p.t.Helper()
	p.call(map[string]any{"cmd": "press", "selector": selector, "key": key})
}

func (p *demoPage) eval(expr string, into any) {
	p.t.Helper()
	if err := json.Unmarshal(p.call(map[string]any{"cmd": "eval", "expr": expr}), into); err != nil {
		p.t.Fatalf("eval %s: %v", expr, err)
	}
}

func (p *demoPage) evalString(expr string) string {
	p.t.Helper()
	var s string
	p.eval(expr, &s)
	return s
}

// paneViewsExpr reads every pane of window.duplexDemo as a paneView.
const paneViewsExpr = `Object.fromEntries(Object.entries(window.duplexDemo.panes).map(([k, p]) => [k, {
	stats: p.stats(), transport: p.sub ? p.sub.transport : '', lost: p.lost, duplicated: p.duplicated,
	gaps: p.gaps, unannounced: p.unannounced, offsets: p.offsets, epoch: p.epoch, latency: p.latency,
	check: document.querySelector('#pane-' + k + ' .check').textContent }]))`

// paneSummaryExpr is paneViewsExpr short enough for a failure message:
// the offsets as their count, first and last.
const paneSummaryExpr = `window.duplexDemo && Object.fromEntries(Object.entries(window.duplexDemo.panes).map(([k, p]) => [k, {
	stats: p.stats(), lost: p.lost, duplicated: p.duplicated, gaps: p.gaps, epoch: p.epoch,
	offsets: p.offsets.length + ' (' + p.offsets[0] + '…' + p.offsets.at(-1) + ')' }]))`

func (p *demoPage) panes() map[string]paneView {
	p.t.Helper()
	// The check text is drawn in an animation frame: let it catch up.
	p.call(map[string]any{"cmd": "eval", "expr": "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"})
	views := map[string]paneView{}
	p.eval(paneViewsExpr, &views)
	return views
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// needPeer fails the test (never skips it) when a third-party peer that
// scripts/test installs is missing, or the npm packages are not installed.
func needPeer(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is missing: run ./scripts/test, which installs the test peers (%v)", b, err)
		}
	}
	if _, err := exec.Command("node", "-e", "require.resolve('./node/node_modules/playwright-core')").CombinedOutput(); err != nil {
		t.Fatalf("npm packages missing in e2e/node: run ./scripts/test (or npm ci in e2e/node)")
	}
}
