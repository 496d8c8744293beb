package e2e

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
)

// runDuplexJS runs e2e/node/duplexjs.js's scenario in chromium, decodes
// its JSON line into out, and fails t on any console error or page error
// that allowed does not match (nil: none is allowed).
func runDuplexJS(t *testing.T, scenario string, args any, out any, allowed *regexp.Regexp) {
	t.Helper()
	needPeer(t, "node", "/usr/bin/chromium")
	a, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, "node", "node/duplexjs.js", scenario, string(a)).Output()
	if err != nil {
		t.Fatalf("duplexjs.js %s: %v\n%s", scenario, err, stderrOf(err))
	}
	var c struct {
		Console []string `json:"console"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("duplexjs.js printed %q: %v", b, err)
	}
	for _, line := range c.Console {
		if allowed == nil || !allowed.MatchString(line) {
			t.Errorf("console error in the page: %s", line)
		}
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("duplexjs.js printed %q: %v", b, err)
	}
}

type jsStats struct {
	Transport  string `json:"transport"`
	State      string `json:"state"`
	Messages   int    `json:"messages"`
	Bytes      int    `json:"bytes"`
	Requests   int    `json:"requests"`
	Reconnects int    `json:"reconnects"`
	Gaps       int    `json:"gaps"`
}

type jsState struct {
	State     string `json:"state"`
	Transport string `json:"transport"`
	Attempt   int    `json:"attempt"`
	Delay     *int   `json:"delay"`
	Reason    string `json:"reason"`
}

type jsRecord struct {
	Offsets    []uint64  `json:"offsets"`
	Gaps       []uint64  `json:"gaps"`
	States     []jsState `json:"states"`
	Errors     []string  `json:"errors"`
	Logs       []string  `json:"logs"`
	TokenCalls int       `json:"tokenCalls"`
	Transport  string    `json:"transport"`
	State      string    `json:"state"`
	Stats      jsStats   `json:"stats"`
	Cursor     string    `json:"cursor"`
}

// wantOffsets fails t unless got is 1..n, once each, in order.
func wantOffsets(t *testing.T, what string, got []uint64, n int) {
	t.Helper()
	ok := len(got) == n
	for i := 0; ok && i < n; i++ {
		ok = got[i] == uint64(i+1)
	}
	if !ok {
		t.Fatalf("%s: offsets %v, want 1..%d once each, in order", what, got, n)
	}
}

// blockingFront is a reverse proxy before a hub that refuses what the
// browser fallback test needs refused: "ws" answers WebSocket upgrades
// 403, "ws-dies" completes them and drops the connection at once (a
// transport that opens and keeps dying), "sse" and "stream" answer 404 on
// /v1/sse and /v1/stream. Everything else goes through, streamed.
func blockingFront(t *testing.T, hubURL string, block ...string) string {
	t.Helper()
	target, err := url.Parse(hubURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	// The page aborting a stream (a cut, a fallback) is no error here.
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(http.StatusBadGateway) }
	blocked := map[string]bool{}
	for _, b := range block {
		blocked[b] = true
	}
	return hubtest.ServeHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upgrade := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
		switch {
		case upgrade && blocked["ws"]:
			http.Error(w, "no WebSocket here", http.StatusForbidden)
		case upgrade && blocked["ws-dies"]:
			acceptThenDrop(t, w, r)
		case r.URL.Path == "/v1/sse" && blocked["sse"], r.URL.Path == "/v1/stream" && blocked["stream"]:
			http.NotFound(w, r)
		case r.URL.Path == "/v1/stream" && blocked["garble"]:
			garbleStream(t, hubURL, w, r)
		default:
			rp.ServeHTTP(w, r)
		}
	}))
}

// garbleStream relays the hub's NDJSON stream with every line split over
// two writes (and so, here, two chunks) and a malformed line after each
// heartbeat.
func garbleStream(t *testing.T, hubURL string, w http.ResponseWriter, r *http.Request) {
	req, err := http.NewRequestWithContext(r.Context(), "GET", hubURL+r.URL.RequestURI(), nil)
	if err != nil {
		t.Errorf("garble: %v", err)
		return
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return // the page went away
	}
	defer res.Body.Close()
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	rc := http.NewResponseController(w)
	br := bufio.NewReader(res.Body)
	for {
		line, err := br.ReadBytes('\n')
		half := len(line) / 2
		for _, part := range [][]byte{line[:half], line[half:]} {
			if _, werr := w.Write(part); werr != nil {
				return
			}
			rc.Flush()
		}
		if err != nil {
			return
		}
		if strings.Contains(string(line), `"heartbeat"`) {
			w.Write([]byte("{\"type\":\n"))
			rc.Flush()
		}
	}
}

// acceptThenDrop answers a WebSocket handshake with 101 and closes the
// TCP connection: the browser sees the socket open, then 1006.
func acceptThenDrop(t *testing.T, w http.ResponseWriter, r *http.Request) {
	sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: duplex.v1\r\n\r\n",
		base64.StdEncoding.EncodeToString(sum[:]))
	rw.Flush()
}

// TestDuplexJSTransports: duplex.js in chromium on each transport gets
// history and live messages once each, in order; sub.cut() reconnects at
// once and resumes with nothing lost; stats() counts what came; publish
// and both forms of history work; the states go connecting → open →
// reconnecting (delay 0 after a cut) → open.
func TestDuplexJSTransports(t *testing.T) {
	h := hubtest.Start(t, nil)
	for i, tr := range []string{"ws", "sse", "ndjson", "poll"} {
		t.Run(tr, func(t *testing.T) {
			channel := fmt.Sprintf("djs%d", i)
			const before, live = 5, 5
			for n := 1; n <= before; n++ {
				postMessage(t, &http.Client{}, h.URL, channel, n)
			}
			var res struct {
				jsRecord
				BeforeCut jsStats    `json:"beforeCut"`
				Published []uint64   `json:"published"`
				History   [][]uint64 `json:"history"`
				HTTPPubs  int        `json:"httpPublishes"`
			}
			runDuplexJS(t, "roundtrip", map[string]any{"url": h.URL, "channel": channel, "transport": tr, "before": before, "live": live}, &res, nil)
			const n = before + 2*live
			wantOffsets(t, "received", res.Offsets, n)
			if res.Transport != tr || res.Stats.Transport != tr {
				t.Errorf("transport %s (stats %s), want %s", res.Transport, res.Stats.Transport, tr)
			}
			if len(res.Errors) != 0 || len(res.Gaps) != 0 {
				t.Errorf("errors %v, gaps %v", res.Errors, res.Gaps)
			}
			s := res.Stats
			if s.Messages != n || s.Reconnects != res.BeforeCut.Reconnects+1 || s.Bytes <= res.BeforeCut.Bytes || s.Requests <= res.BeforeCut.Requests || s.State != "open" {
				t.Errorf("stats %+v (before the cut %+v): want %d messages, one reconnect more, more bytes and requests", s, res.BeforeCut, n)
			}
			// publish goes over the subscription's WebSocket when it has one.
			if wantHTTP := map[bool]int{true: 0, false: 2 * live}[tr == "ws"]; res.HTTPPubs != wantHTTP {
				t.Errorf("%d of %d publishes went over HTTP, want %d", res.HTTPPubs, 2*live, wantHTTP)
			}
			if want := fmt.Sprint(res.Offsets[before:]); fmt.Sprint(res.Published) != want {
				t.Errorf("publish answered offsets %v, received %s", res.Published, want)
			}
			if got := fmt.Sprint(res.History); got != "[[3 4 5] [5 6]]" {
				t.Errorf("history(ch, 2, 3) and history(ch, {after: 4, limit: 2}): %s", got)
			}
			if got := res.States; len(got) < 4 || got[0].State != "connecting" || got[1].State != "open" || got[1].Transport != tr {
				t.Errorf("states %+v: want connecting, open over %s first", got, tr)
			} else {
				var cut *jsState
				for i := range got {
					if got[i].State == "reconnecting" {
						cut = &got[i]
					}
				}
				if cut == nil || cut.Attempt != 1 || cut.Delay == nil || *cut.Delay != 0 || got[len(got)-1].State != "open" {
					t.Errorf("states %+v: want a reconnecting {attempt 1, delay 0} after the cut, then open", got)
				}
			}
			if !strings.HasPrefix(res.Cursor, channel+":") || !strings.HasSuffix(res.Cursor, fmt.Sprintf(":%d", n)) {
				t.Errorf("cursor %q after %d messages", res.Cursor, n)
			}
		})
	}
}

// The console lines chromium writes for a refused WebSocket, EventSource
// or fetch: the refusal the fallback test makes on purpose.
var refusalNoise = regexp.MustCompile(`WebSocket connection to '.*/v1/ws.*' failed|EventSource's response has a .* that is not|Failed to load resource: the server responded with a status of (403|404)`)

// TestDuplexJSAutoFallback: behind a front that refuses WebSocket, auto
// lands on SSE; also refusing SSE, on NDJSON; also refusing the NDJSON
// stream, on long polling. A WebSocket that opens and dies at once each
// time is given up for SSE too. Each receives its messages once, in order.
func TestDuplexJSAutoFallback(t *testing.T) {
	h := hubtest.Start(t, nil)
	cases := []struct {
		block []string
		want  string
	}{
		{[]string{"ws"}, "sse"},
		{[]string{"ws-dies"}, "sse"},
		{[]string{"ws", "sse"}, "ndjson"},
		{[]string{"ws", "sse", "stream"}, "poll"},
		// Not a refusal: a malformed line in the NDJSON stream is
		// reported (opts.log) and skipped, and the stream goes on.
		{[]string{"ws", "sse", "garble"}, "ndjson"},
	}
	for i, c := range cases {
		t.Run(strings.Join(c.block, "+")+"->"+c.want, func(t *testing.T) {
			front := blockingFront(t, h.URL, c.block...)
			channel := fmt.Sprintf("djsfall%d", i)
			const before, live = 3, 3
			for n := 1; n <= before; n++ {
				postMessage(t, &http.Client{}, h.URL, channel, n)
			}
			var res jsRecord
			runDuplexJS(t, "roundtrip", map[string]any{"url": front, "channel": channel, "transport": "auto", "before": before, "live": live}, &res, refusalNoise)
			if res.Transport != c.want {
				t.Fatalf("auto uses %s, want %s (states %+v)", res.Transport, c.want, res.States)
			}
			wantOffsets(t, "received", res.Offsets, before+2*live)
			if strings.Contains(strings.Join(c.block, ","), "garble") {
				bad := 0
				for _, l := range res.Logs {
					if strings.Contains(l, "ndjson: malformed line") {
						bad++
					}
				}
				// One opening heartbeat for each of the two connections (before and after the cut).
				if bad < 2 || len(res.Errors) != 0 {
					t.Errorf("log %q, errors %v: want each malformed line reported, none fatal", res.Logs, res.Errors)
				}
			}
		})
	}
}

// TestDuplexJSSharedWorker: two tabs of one browser context subscribe
// with shared: true, the second to one more channel and with a cursor
// from the start; the hub sees one subscriber of each channel (one
// connection, held by the SharedWorker), and each tab gets every message
// of its channels once, in order: history first, then live.
// Without a SharedWorker each tab runs its own connection, as without
// the flag.
func TestDuplexJSSharedWorker(t *testing.T) {
	t.Run("worker", func(t *testing.T) { testShared(t, false) })
	t.Run("no-worker", func(t *testing.T) { testShared(t, true) })
}

func testShared(t *testing.T, noWorker bool) {
	h := hubtest.Start(t, nil)
	const before, live = 3, 4
	for n := 1; n <= before; n++ {
		postMessage(t, &http.Client{}, h.URL, "djsshareda", n)
	}
	var res struct {
		Subscribers []int  `json:"subscribers"`
		Worker      string `json:"worker"`
		Tabs        []struct {
			jsRecord
			ByChannel map[string][]uint64 `json:"byChannel"`
		} `json:"tabs"`
	}
	runDuplexJS(t, "shared", map[string]any{"url": h.URL, "channels": []string{"djsshareda", "djssharedb"}, "before": before, "live": live, "noWorker": noWorker}, &res, nil)
	wantWorker, wantSubs := "function", "[1 1]"
	if noWorker {
		wantWorker, wantSubs = "undefined", "[2 1]"
	}
	if res.Worker != wantWorker {
		t.Fatalf("typeof SharedWorker is %s in the tabs, want %s", res.Worker, wantWorker)
	}
	if fmt.Sprint(res.Subscribers) != wantSubs {
		t.Errorf("the hub counts %v subscribers of the two channels for two shared tabs, want %s", res.Subscribers, wantSubs)
	}
	if len(res.Tabs) != 2 {
		t.Fatalf("%d tabs reported", len(res.Tabs))
	}
	for i, tab := range res.Tabs {
		wantOffsets(t, fmt.Sprintf("tab %d, channel a", i+1), tab.ByChannel["djsshareda"], before+live)
		if tab.Transport != "ws" {
			t.Errorf("tab %d: transport %s", i+1, tab.Transport)
		}
	}
	if _, ok := res.Tabs[0].ByChannel["djssharedb"]; ok {
		t.Errorf("tab 1 got channel b, which it did not subscribe to: %v", res.Tabs[0].ByChannel)
	}
	wantOffsets(t, "tab 2, channel b", res.Tabs[1].ByChannel["djssharedb"], live)
}

// TestDuplexJSTokenRefresh: on a hub with a JWT secret, the page's token
// is a function minting 2-second tokens. The hub ends the first token's
// connection when it expires; duplex.js asks the function again and the
// subscription goes on receiving, on every streaming transport. A first
// token already expired is refused and replaced, on every transport.
func TestDuplexJSTokenRefresh(t *testing.T) {
	secret := "browser-secret"
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{JWTSecret: []byte(secret)}})
	cases := []struct {
		transport    string
		expiredFirst bool
	}{
		{"ws", false}, {"sse", false}, {"ndjson", false},
		// The first token is refused (401, or a handshake that fails):
		// the function is asked again and the subscription opens.
		{"ws", true}, {"sse", true}, {"ndjson", true}, {"poll", true},
	}
	for _, c := range cases {
		tr := c.transport
		name := tr
		if c.expiredFirst {
			name += "-expired-first"
		}
		t.Run(name, func(t *testing.T) {
			var res struct {
				jsRecord
				FirstExp      float64 `json:"firstExp"`
				ReconnectedAt float64 `json:"reconnectedAt"`
				Minted        int     `json:"minted"`
			}
			var noise *regexp.Regexp // what chromium says of the 401s this case makes on purpose
			if c.expiredFirst {
				noise = regexp.MustCompile(`WebSocket connection to .* failed: HTTP Authentication failed|EventSource's response has a .* that is not|status of 401 \(Unauthorized\)`)
			}
			runDuplexJS(t, "token", map[string]any{"url": h.URL, "channel": "djstok" + name, "secret": secret, "ttl": 2, "transport": tr, "expiredFirst": c.expiredFirst}, &res, noise)
			wantOffsets(t, "received", res.Offsets, 2)
			if len(res.Errors) != 0 {
				t.Errorf("errors %v", res.Errors)
			}
			if res.ReconnectedAt < res.FirstExp {
				t.Errorf("reconnected at %.1f, before the first token's exp %.0f: not the expiry this test is about", res.ReconnectedAt, res.FirstExp)
			}
			if res.TokenCalls < 2 || res.Minted < 2 {
				t.Errorf("token function called %d times (%d minted), want at least 2", res.TokenCalls, res.Minted)
			}
		})
	}
}

// TestDuplexJSOffline: while the browser is offline a cut subscription
// waits (state reconnecting, reason offline) without a single request;
// back online it reconnects at once and gets what was published meanwhile.
func TestDuplexJSOffline(t *testing.T) {
	h := hubtest.Start(t, nil)
	for _, tr := range []string{"ws", "poll"} {
		t.Run(tr, func(t *testing.T) {
			var res struct {
				jsRecord
				OfflineRequests      int    `json:"offlineRequests"`
				StillOfflineRequests int    `json:"stillOfflineRequests"`
				StillOfflineState    string `json:"stillOfflineState"`
			}
			runDuplexJS(t, "offline", map[string]any{"url": h.URL, "channel": "djsoff" + tr, "transport": tr}, &res, nil)
			wantOffsets(t, "received", res.Offsets, 1)
			if res.StillOfflineRequests != res.OfflineRequests || res.StillOfflineState != "reconnecting" {
				t.Errorf("offline: %d requests, then %d (state %s): want none while offline", res.OfflineRequests, res.StillOfflineRequests, res.StillOfflineState)
			}
			if res.State != "open" || res.Stats.Requests <= res.StillOfflineRequests {
				t.Errorf("back online: state %s, stats %+v", res.State, res.Stats)
			}
		})
	}
}

// TestDuplexJSWakeUp: a subscription waiting out a long backoff (its
// WebSocket refused) tries again at once on the browser's 'online' event
// and when the tab becomes visible, and opens.
func TestDuplexJSWakeUp(t *testing.T) {
	h := hubtest.Start(t, nil)
	for _, event := range []string{"online", "visibilitychange"} {
		t.Run(event, func(t *testing.T) {
			var refuse atomic.Bool
			refuse.Store(true)
			target, _ := url.Parse(h.URL)
			rp := httputil.NewSingleHostReverseProxy(target)
			front := hubtest.ServeHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case r.URL.Path == "/front/unblock":
					refuse.Store(false)
				case refuse.Load() && strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
					http.Error(w, "not yet", http.StatusForbidden)
				default:
					rp.ServeHTTP(w, r)
				}
			}))
			var res struct {
				Waiting jsState `json:"waiting"`
				State   string  `json:"state"`
			}
			runDuplexJS(t, "wake", map[string]any{"url": front, "channel": "djswake", "unblock": front + "/front/unblock", "event": event}, &res, refusalNoise)
			if res.Waiting.Attempt < 1 || res.Waiting.Delay == nil || *res.Waiting.Delay < 60000 {
				t.Fatalf("reconnecting state %+v: want a delay of a minute or more, which only a wake-up can cut short", res.Waiting)
			}
			if res.State != "open" {
				t.Errorf("state %s after %s", res.State, event)
			}
		})
	}
}

// docsChatPage returns the HTML block of docs/client.md's "Browser:
// duplex.js" section.
func docsChatPage(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/client.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "\n## Browser: duplex.js")
	if i < 0 {
		t.Fatal(`docs/client.md has no "## Browser: duplex.js" section`)
	}
	sc := bufio.NewScanner(strings.NewReader(doc[i:]))
	var page []string
	in := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && line == "```html":
			in = true
		case in && line == "```":
			return strings.Join(page, "\n") + "\n"
		case in:
			page = append(page, line)
		}
	}
	t.Fatal("no ```html block in docs/client.md's browser section")
	return ""
}

// TestDuplexJSDocsChatPage: the chat page of docs/client.md, saved as a
// file and served by a plain file server on another loopback port (as
// "python3 -m http.server" would), talks to the hub named in its ?hub=:
// a message typed and sent comes back in its list.
func TestDuplexJSDocsChatPage(t *testing.T) {
	h := hubtest.Start(t, nil)
	dir := t.TempDir()
	page := docsChatPage(t)
	if n := strings.Count(page, "\n"); n > 30 {
		t.Errorf("the chat page is %d lines; the docs promise about 20", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "chat.html"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	files := hubtest.ServeHandler(t, http.FileServer(http.Dir(dir)))
	var res struct {
		Items []string `json:"items"`
	}
	text := fmt.Sprintf("hello from the docs %d", time.Now().UnixNano())
	runDuplexJS(t, "chat", map[string]any{"url": files + "/chat.html?hub=" + url.QueryEscape(h.URL), "text": text}, &res, nil)
	if len(res.Items) != 1 || res.Items[0] != text {
		t.Fatalf("chat list %q, want just %q", res.Items, text)
	}
}

// TestDuplexJSPresence: duplex.js's presence on every transport. A tab that
// asked for joins and leaves sees another tab's join with its info, reads
// both members and the stats, sees the other's leave when it closes, and
// none of it counts as a message or moves the cursor.
func TestDuplexJSPresence(t *testing.T) {
	h := hubtest.Start(t, &hubtest.Options{Hub: hub.Config{Presence: func(ch string) bool { return strings.HasPrefix(ch, "room") }}})
	for i, tr := range []string{"ws", "sse", "ndjson", "poll"} {
		t.Run(tr, func(t *testing.T) {
			channel := fmt.Sprintf("room%d", i)
			type event struct {
				Type string `json:"type"`
				Info struct {
					Name string `json:"name"`
				} `json:"info"`
			}
			var res struct {
				Events  []event  `json:"events"`
				Offsets []uint64 `json:"offsets"`
				Stats   jsStats  `json:"stats"`
				Cursor  string   `json:"cursor"`
				Members []struct {
					Name      string `json:"name"`
					Transport string `json:"transport"`
				} `json:"members"`
				Clients int `json:"clients"`
			}
			runDuplexJS(t, "presence", map[string]any{"url": h.URL, "channel": channel, "transport": tr}, &res, nil)
			wire := map[string]string{"ws": "ws", "sse": "sse", "ndjson": "stream", "poll": "poll"}[tr]
			if len(res.Members) != 2 || res.Members[0].Name != "A" || res.Members[1].Name != "B" ||
				res.Members[0].Transport != wire || res.Members[1].Transport != wire {
				t.Errorf("members %+v, want A and B over %s", res.Members, wire)
			}
			if res.Clients != 2 {
				t.Errorf("stats: %d clients, want 2", res.Clients)
			}
			var joinB, leaveB int
			for _, e := range res.Events {
				switch {
				case e.Type == "join" && e.Info.Name == "B":
					joinB++
				case e.Type == "leave" && e.Info.Name == "B":
					leaveB++
				}
			}
			if joinB != 1 || leaveB != 1 {
				t.Errorf("events %+v: want B's join and leave once each", res.Events)
			}
			if len(res.Offsets) != 1 || res.Offsets[0] != 1 || res.Stats.Messages != 1 {
				t.Errorf("offsets %v, stats %+v: want the one message, and events not counted", res.Offsets, res.Stats)
			}
			if !strings.HasSuffix(res.Cursor, ":1") {
				t.Errorf("cursor %q: want it at the message's offset 1", res.Cursor)
			}
		})
	}
}

// TestCORSPreflightFromChromium: a page on a second origin publishes with
// a JSON POST and reads history with If-None-Match, requests chromium
// sends only after a CORS preflight. The hub that allows the page's origin
// answers the preflight and both go through; one that does not refuses the
// preflight, the browser never sends the POST, and nothing is stored.
func TestCORSPreflightFromChromium(t *testing.T) {
	files := hubtest.ServeHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>elsewhere</title><link rel=icon href=data:,>")
	}))
	type result struct {
		Status int    `json:"status"`
		Error  string `json:"error"`
	}
	for _, c := range []struct {
		name    string
		allowed []string
	}{{"allowed", []string{files}}, {"refused", []string{"https://elsewhere.example"}}} {
		t.Run(c.name, func(t *testing.T) {
			h := hubtest.Start(t, &hubtest.Options{Server: server.Config{AllowedOrigins: c.allowed}})
			var res struct {
				Publish, History result
			}
			var allowed *regexp.Regexp
			if c.name == "refused" {
				allowed = regexp.MustCompile(`blocked by CORS policy|net::ERR_FAILED`)
			}
			runDuplexJS(t, "cors", map[string]any{"page": files + "/", "hub": h.URL, "channel": "cors"}, &res, allowed)
			stored := len(history(t, h.URL, "cors"))
			switch c.name {
			case "allowed":
				if res.Publish.Status != 201 || res.History.Status != 200 || stored != 1 {
					t.Errorf("publish %+v, history %+v, %d stored: want 201, 200 and the message", res.Publish, res.History, stored)
				}
			default:
				if res.Publish.Error == "" || res.History.Error == "" || stored != 0 {
					t.Errorf("publish %+v, history %+v, %d stored: want both refused by the browser and nothing stored", res.Publish, res.History, stored)
				}
			}
		})
	}
}
