package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

// stallHub is a hub that cuts a stalled WebSocket reader without a close
// frame. Its outbound queue (1 MiB) holds more than one write-delay
// period of what the tests publish, so it overflows only once the socket
// is full and the writer is stuck; the 1013 close frame cannot be written
// then, and when the stuck write's timeout (2s) passes the hub drops the
// TCP connection. History keeps everything published, so a resume from the
// cursor loses nothing.
func stallHub(t *testing.T, history int) *hubtest.Hub {
	return hubtest.Start(t, &hubtest.Options{
		Hub:    hub.Config{QueueBytes: 1 << 20, QueueMessages: 1024},
		Memory: memory.Config{HistorySize: history},
		// No compression: these tests need the socket to fill before the
		// queue overflows, and their payloads (runs of one letter) would
		// shrink a thousandfold on the wire.
		Server: server.Config{WriteTimeout: 2 * time.Second, NoWSCompression: true},
	})
}

// postPayload publishes {"n":n,"p":payload} over REST. Publishing over
// HTTP paces the publisher by a round trip, so the hub's writer keeps the
// socket full before the queue overflows.
func postPayload(t *testing.T, hc *http.Client, base, channel string, n int, payload string) {
	t.Helper()
	body := fmt.Sprintf(`{"n":%d,"p":%q}`, n, payload)
	resp, err := hc.Post(base+"/v1/channels/"+channel+"/messages", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("publish %d: %v", n, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish %d: status %d", n, resp.StatusCode)
	}
}

// waitFor polls cond until it holds, failing the test after 20s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestClientStallAbruptClose: a WebSocket subscriber whose application
// stops calling Next stops reading its socket; the hub's queue for it
// overflows while the socket is full, so the hub cannot write the 1013
// close frame and drops the connection. When the application goes on, the
// client reads what the socket still held, sees the connection end without
// a close frame (reported as 1006), reconnects as after a 1013 and resumes
// from its cursor: every message arrives exactly once, in order, offsets
// 1..N.
func TestClientStallAbruptClose(t *testing.T) {
	hubtest.CheckLeaks(t)
	const n = 6000
	h := stallHub(t, n)
	opts := fastOpts(client.WebSocket)
	var mu sync.Mutex
	var reasons []error
	opts.OnDisconnect = func(_ client.Transport, err error) {
		mu.Lock()
		reasons = append(reasons, err)
		mu.Unlock()
	}
	c := dialClient(t, h.URL, opts)
	const ch = "stall"
	s := subscribe(t, c, []string{ch}, &client.SubscribeOptions{Buffer: 1})
	sessions := h.Hub.Stats().Sessions // the subscription's and Publish's

	// The application stalls: nothing calls Next while n messages go out.
	payload := strings.Repeat("x", 2<<10)
	hc := &http.Client{}
	for i := 1; i <= n; i++ {
		postPayload(t, hc, h.URL, ch, i, payload)
	}
	// The hub has cut the subscription's connection and let it go.
	waitFor(t, "the hub to cut the stalled subscriber", func() bool {
		st := h.Hub.Stats()
		return st.SlowCuts >= 1 && st.Sessions < sessions
	})

	for want := uint64(1); want <= n; want++ {
		ev := nextEvent(t, s)
		if ev.Gap != nil {
			t.Fatalf("gap %+v before offset %d: history keeps everything", *ev.Gap, want)
		}
		if ev.Message.Offset != want || dataN(t, ev.Message) != int(want) {
			t.Fatalf("got offset %d (n=%d), want %d", ev.Message.Offset, dataN(t, ev.Message), want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) == 0 {
		t.Fatal("the subscription never disconnected")
	}
	t.Logf("disconnects: %v", reasons)
	switch code := msg.CloseCodeOf(reasons[0]); code {
	case msg.CloseAbnormal:
	case msg.CloseSlow:
		t.Fatalf("first disconnect %v: the hub could write its close frame, so this test did not fill the socket", reasons[0])
	default:
		t.Fatalf("first disconnect %v: close code %d, want %d (the connection ended without a close frame)", reasons[0], code, msg.CloseAbnormal)
	}
}

// TestBrowserStallAbruptClose is TestClientStallAbruptClose for duplex.js
// in chromium, three times in a row: the page's main thread is kept busy
// (synchronous XHRs that publish, then poll /metrics) until the hub has
// cut its WebSocket as a slow consumer. The page sees a close without a
// close frame (1006); duplex.js reconnects from its cursor, its handler
// gets every message once, in order, 1..N, and "auto" stays on WebSocket:
// a page that was busy is no reason to give up a transport that works.
func TestBrowserStallAbruptClose(t *testing.T) {
	needPeer(t, "node", "/usr/bin/chromium")
	const rounds, perRound = 3, 300
	const n = rounds * perRound
	h := stallHub(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "node", "node/ws_stall.js", h.URL, "bstall", "auto",
		fmt.Sprint(rounds), fmt.Sprint(perRound), fmt.Sprint(32<<10)).Output()
	if err != nil {
		t.Fatalf("ws_stall.js: %v\n%s", err, stderrOf(err))
	}
	var res struct {
		Offsets []json.RawMessage `json:"offsets"`
		Closes  []struct {
			Code   int    `json:"code"`
			Clean  bool   `json:"clean"`
			Reason string `json:"reason"`
			Got    int    `json:"got"`
		} `json:"closes"`
		Disconnects []struct {
			Transport string `json:"transport"`
			Code      int    `json:"code"`
			Error     string `json:"error"`
		} `json:"disconnects"`
		Opens     int    `json:"opens"`
		Transport string `json:"transport"`
		Stalls    []struct {
			Cuts      int `json:"cuts"`
			PublishMs int `json:"publishMs"`
		} `json:"stalls"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	t.Logf("opens %d, closes %+v, duplex.js disconnects %+v, stalls %+v, %d offsets, transport %s",
		res.Opens, res.Closes, res.Disconnects, res.Stalls, len(res.Offsets), res.Transport)
	for i, o := range res.Offsets {
		if string(o) != fmt.Sprint(i+1) {
			t.Fatalf("item %d is %s: want offsets 1..%d once each, in order (%d items)", i, o, n, len(res.Offsets))
		}
	}
	if len(res.Offsets) != n {
		t.Fatalf("got %d offsets, want 1..%d", len(res.Offsets), n)
	}
	if len(res.Stalls) != rounds || res.Stalls[0].Cuts < 1 {
		t.Fatalf("stalls %+v: the hub dropped the page without its queue overflowing, not the slow-consumer path", res.Stalls)
	}
	if len(res.Closes) < rounds {
		t.Fatalf("the page saw %d WebSocket closes in %d stalls", len(res.Closes), rounds)
	}
	for _, c := range res.Closes[:rounds] {
		if c.Code != 1006 || c.Clean {
			t.Fatalf("closes the page saw: %+v, want 1006 without a close frame each time (the 1013 could not be written)", res.Closes)
		}
	}
	if len(res.Disconnects) < rounds || res.Disconnects[0].Code != 1006 || res.Disconnects[0].Transport != "ws" {
		t.Fatalf("duplex.js reported disconnects %+v, want a 1006 for each stall", res.Disconnects)
	}
	if res.Transport != "ws" {
		t.Fatalf("auto moved to %s after the stalls, want ws", res.Transport)
	}
}
