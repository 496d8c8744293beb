package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hubtest"
)

// TestStreamCurlReadsLive: curl -N reads SSE and NDJSON as they happen.
// Message n+1 is published only after curl has printed message n, so each
// line provably came out while the response was still open.
func TestStreamCurlReadsLive(t *testing.T) {
	needBin(t, "curl")
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	for _, tc := range []struct {
		path   string
		isLine func(string) bool // a message line
	}{
		{"/v1/sse", func(l string) bool { return strings.HasPrefix(l, "data: ") }},
		{"/v1/stream", func(l string) bool { return strings.HasPrefix(l, `{"type":"message"`) }},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/v1/"), func(t *testing.T) {
			channel := "curl-" + strings.TrimPrefix(tc.path, "/v1/")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "curl", "-sSN", "--http1.1", h.URL+tc.path+"?channel="+channel)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 64)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			var all []string
			// The stream opens at once (SSE: retry and id; NDJSON: a
			// heartbeat with the starting cursor).
			first, ok := <-lines
			if !ok {
				t.Fatalf("curl printed nothing: %s", stderr.String())
			}
			all = append(all, first)
			for n := 1; n <= 3; n++ {
				postMessage(t, hc, h.URL, channel, n)
				for {
					l, ok := <-lines
					if !ok {
						t.Fatalf("curl ended before message %d: %q %s", n, all, stderr.String())
					}
					all = append(all, l)
					if tc.isLine(l) {
						want := fmt.Sprintf(`"offset":%d,`, n)
						if !strings.Contains(l, want) {
							t.Fatalf("line %q, want offset %d", l, n)
						}
						break
					}
				}
			}
			// End curl (the PID we started) and check what it printed.
			cmd.Process.Kill()
			for range lines {
			}
			cmd.Wait()
			if tc.path == "/v1/sse" {
				if all[0] != "retry: 1000" {
					t.Errorf("first line %q, want retry: 1000", all[0])
				}
			} else {
				var hb struct{ Type, Cursor string }
				if err := json.Unmarshal([]byte(all[0]), &hb); err != nil || hb.Type != "heartbeat" || !strings.HasPrefix(hb.Cursor, channel+":") {
					t.Errorf("first line %q, want a heartbeat with the cursor", all[0])
				}
			}
		})
	}
}

// needBin fails the test (never skips it) when a peer program is missing.
func needBin(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is missing: run ./scripts/test, which installs the test peers (%v)", b, err)
		}
	}
}
