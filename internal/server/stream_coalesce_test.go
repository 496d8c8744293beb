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

// Write coalescing on NDJSON (and SSE, same writer): a stream written to
// within the delay holds what comes next until the delay has passed; a
// closing session does not wait. With a delay of an hour, the second
// message stays held, and shutdown still ends the stream at once.
func TestStreamWriteCoalescing(t *testing.T) {
	for _, delay := range []time.Duration{-1, time.Hour} {
		t.Run(delay.String(), func(t *testing.T) {
			hubtest.CheckLeaks(t)
			h := hubtest.Start(t, &hubtest.Options{Server: server.Config{WriteDelay: delay}})
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
