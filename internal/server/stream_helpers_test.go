package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/msg"
)

// Helpers shared by the SSE, NDJSON and long-poll tests: a real hub over
// real sockets (hubtest), raw HTTP readers, and the decoders of
// internal/bench (fuzzed there).

// testClient returns an HTTP client of its own whose idle connections are
// closed when t ends, so leak checks see none.
func testClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// publish posts data to channel and returns where it landed.
func publish(t testing.TB, c *http.Client, base, channel, data string) msg.Published {
	t.Helper()
	resp, err := c.Post(base+"/v1/channels/"+channel+"/messages", "application/json", strings.NewReader(data))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish: %s: %s", resp.Status, body)
	}
	var p msg.Published
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("publish: %v", err)
	}
	return p
}

// get starts a GET of base+path with headers (name, value pairs); the body
// is closed when t ends.
func get(t testing.TB, ctx context.Context, c *http.Client, url string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// wantOK fails t unless resp is 200 with content type ctype and the
// headers that get a stream through buffering proxies.
func wantStreamHeaders(t testing.TB, resp *http.Response, ctype string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("status %s: %s", resp.Status, body)
	}
	for k, v := range map[string]string{"Content-Type": ctype, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
}

// waitSubscribers polls the channel's info until it counts n subscribers.
func waitSubscribers(t testing.TB, h *hubtest.Hub, channel string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := h.Hub.Info(context.Background(), channel)
		if err != nil {
			t.Fatal(err)
		}
		if info.Subscribers == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("channel %s: %d subscribers, want %d", channel, info.Subscribers, n)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, with a deadline
	}
}

// waitSessions polls the hub until it has n sessions.
func waitSessions(t testing.TB, h *hubtest.Hub, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.Hub.Stats().Sessions != n {
		if time.Now().After(deadline) {
			t.Fatalf("hub has %d sessions, want %d", h.Hub.Stats().Sessions, n)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, with a deadline
	}
}

// errorCode decodes an error response's code.
func errorCode(t testing.TB, resp *http.Response) (msg.Code, string) {
	t.Helper()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var eb msg.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if !bytes.HasSuffix(body, []byte("\n")) {
		t.Errorf("error body not newline-terminated")
	}
	return eb.Error.Code, eb.Error.Message
}

func numbered(i int) string { return fmt.Sprintf(`{"n":%d}`, i) }
