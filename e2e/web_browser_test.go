package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
)

// TestBrowserClient drives the demo page, and so duplex.js, in a real
// chromium: every transport receives the history it asked for and then live
// messages, each once, in order; and "auto" falls back to SSE when the hub
// refuses the page's WebSocket upgrade.
func TestBrowserClient(t *testing.T) {
	needPeer(t, "node", "/usr/bin/chromium")
	cases := []struct {
		transport, want string
		opts            *hubtest.Options
	}{
		{"ws", "ws", nil},
		{"sse", "sse", nil},
		{"poll", "poll", nil},
		{"auto", "ws", nil},
		// Only a foreign origin is allowed: the page's WebSocket upgrade is
		// refused (origin check); its same-origin EventSource is not.
		{"auto", "sse", &hubtest.Options{Server: server.Config{AllowedOrigins: []string{"https://elsewhere.example"}}}},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%s->%s", c.transport, c.want), func(t *testing.T) {
			h := hubtest.Start(t, c.opts)
			channel := fmt.Sprintf("browser%d", i)
			const before, live = 5, 10
			hc := &http.Client{}
			for n := 1; n <= before; n++ {
				postMessage(t, hc, h.URL, channel, n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "node", "node/web_demo.js", h.URL, channel, c.transport, fmt.Sprint(before), fmt.Sprint(live)).Output()
			if err != nil {
				t.Fatalf("web_demo.js: %v\n%s", err, stderrOf(err))
			}
			var res struct {
				Transport string   `json:"transport"`
				Offsets   []uint64 `json:"offsets"`
				Lines     int      `json:"lines"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			if res.Transport != c.want {
				t.Errorf("duplex.js used %s, want %s", res.Transport, c.want)
			}
			if len(res.Offsets) != before+live || res.Lines != before+live {
				t.Fatalf("got offsets %v (%d log lines), want 1..%d", res.Offsets, res.Lines, before+live)
			}
			for i, o := range res.Offsets {
				if o != uint64(i+1) {
					t.Fatalf("offsets %v: want 1..%d once each, in order", res.Offsets, before+live)
				}
			}
		})
	}
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
