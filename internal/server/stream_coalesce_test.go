package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
)

// Write batching on NDJSON (and SSE, same writer): over the write budget,
// a stream written to in the current window holds what comes next until
// the window ends; a closing session does not wait. With a budget that
// pays for no write and a window of an hour, the first message goes out at
// once, the second stays held, and shutdown still ends the stream at once;
// with no budget (-1) nothing is held.
func TestStreamWriteCoalescing(t *testing.T) {
	for _, delay := range []time.Duration{-1, time.Hour} {
		t.Run(delay.String(), func(t *testing.T) {
			hubtest.CheckLeaks(t)
			h := hubtest.Start(t, &hubtest.Options{Server: server.Config{WriteDelay: delay, WriteBudget: 1e-9}})
			c := testClient(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			resp := get(t, ctx, c, h.URL+"/v1/stream?channel=co")
			wantStreamHeaders(t, resp, "application/x-ndjson")
			lines := make(chan string, 16)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			next := func() (string, uint64) {
				t.Helper()
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatal("stream ended")
					}
					var f struct {
						Type   string `json:"type"`
						Offset uint64 `json:"offset"`
					}
					if err := json.Unmarshal([]byte(l), &f); err != nil {
						t.Fatalf("line %q: %v", l, err)
					}
					return f.Type, f.Offset
				case <-time.After(10 * time.Second):
					t.Fatal("no line within 10s")
				}
				return "", 0
			}
			if typ, _ := next(); typ != "heartbeat" {
				t.Fatalf("first line: %s", typ)
			}
			publish(t, c, h.URL, "co", `1`)
			if typ, off := next(); typ != "message" || off != 1 {
				t.Fatalf("first message: %s %d", typ, off)
			}
			publish(t, c, h.URL, "co", `2`)
			if delay < 0 {
				if typ, off := next(); typ != "message" || off != 2 {
					t.Fatalf("second message: %s %d", typ, off)
				}
			} else {
				select {
				case l := <-lines:
					t.Fatalf("the second message was not held: %s", l)
				case <-time.After(300 * time.Millisecond):
				}
			}
			h.Stop(t) // waits for the stream to end: a held one must not wait
			for l := range lines {
				t.Fatalf("after shutdown: %s", l)
			}
		})
	}
}
