package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/hubtest"
)

// compressions reads duplex_ws_compressions_total from the hub's /metrics.
func compressions(t *testing.T, hubURL string) int {
	t.Helper()
	resp, err := http.Get(hubURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "duplex_ws_compressions_total "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatal("no duplex_ws_compressions_total in /metrics")
	return 0
}

// TestWSDeflatePeers: npm ws, python3-websockets and chromium negotiate
// permessage-deflate with the hub, publish compressed frames and read
// their publications back compressed (one compression each).
func TestWSDeflatePeers(t *testing.T) {
	wsNeedPeers(t)
	needPeer(t, "chromium")
	h := hubtest.Start(t, nil)
	for i, peer := range []struct {
		name string
		cmd  []string
	}{
		{"node-ws", []string{"node", "node/ws_deflate.js"}},
		{"python-websockets", []string{"/usr/bin/python3", "python/ws_deflate.py"}},
		{"chromium", []string{"node", "node/ws_deflate_browser.js"}},
	} {
		t.Run(peer.name, func(t *testing.T) {
			const n = 10
			before := compressions(t, h.URL)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append(peer.cmd[1:], "ws://"+h.Addr+"/v1/ws", fmt.Sprintf("deflate%d", i), strconv.Itoa(n))
			out, err := exec.CommandContext(ctx, peer.cmd[0], args...).Output()
			if err != nil {
				t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", peer.name, err, out, stderrOf(err))
			}
			var r struct {
				Extensions string `json:"extensions"`
				Messages   []struct {
					N    int    `json:"n"`
					Text string `json:"text"`
				} `json:"messages"`
			}
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("report %q: %v", out, err)
			}
			if !strings.HasPrefix(r.Extensions, "permessage-deflate; server_no_context_takeover") {
				t.Errorf("extensions %q, want permessage-deflate; server_no_context_takeover…", r.Extensions)
			}
			if len(r.Messages) != n {
				t.Fatalf("%d messages back, want %d", len(r.Messages), n)
			}
			for k, m := range r.Messages {
				if m.N != k+1 || m.Text != strings.Repeat("ünïcødé ", 200) {
					t.Fatalf("message %d: n %d, text %.30q", k, m.N, m.Text)
				}
			}
			if got := compressions(t, h.URL) - before; got != n {
				t.Errorf("%d compressions for %d publications, want %d", got, n, n)
			}
		})
	}
}

// TestClientCompression: the Go client offers permessage-deflate unless
// told not to, and reads compressed publications.
func TestClientCompression(t *testing.T) {
	h := hubtest.Start(t, nil)
	big := strings.Repeat(`"compressible", `, 100)
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoCompression=%v", off), func(t *testing.T) {
			opts := fastOpts(client.WebSocket)
			opts.NoCompression = off
			c := dialClient(t, h.URL, opts)
			channel := fmt.Sprintf("zc-%v", off)
			s := subscribe(t, c, []string{channel}, nil)
			before := compressions(t, h.URL)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := 1; i <= 3; i++ {
				if _, err := c.Publish(ctx, channel, json.RawMessage(fmt.Sprintf(`{"n":%d,"l":[%s0]}`, i, big))); err != nil {
					t.Fatal(err)
				}
			}
			for i := 1; i <= 3; i++ {
				e := nextEvent(t, s)
				if e.Message == nil || dataN(t, e.Message) != i {
					t.Fatalf("event %d: %+v", i, e)
				}
			}
			want := 3
			if off {
				want = 0
			}
			if got := compressions(t, h.URL) - before; got != want {
				t.Errorf("%d compressions, want %d", got, want)
			}
		})
	}
}
