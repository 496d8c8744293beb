package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/msg"
)

// TestPollBacklogOverSeveralAnswers: a poller far behind — three channels
// of deep history of large messages, more than the session queue holds and
// more than one answer carries — gets everything over several polls, each
// offset once, with a bounded answer each time.
func TestPollBacklogOverSeveralAnswers(t *testing.T) {
	h := hubtest.Start(t, &hubtest.Options{Hub: hub.Config{QueueMessages: 16}})
	big := `"` + strings.Repeat("x", 60000) + `"`
	chans := []string{"a", "b", "c"}
	const perChan = 40 // 3 × 40 × 60 KB ≈ 7 MB of backlog
	for _, ch := range chans {
		for range perChan {
			if resp, body := do(t, "POST", h.URL+"/v1/channels/"+ch+"/messages", big); resp.StatusCode != 201 {
				t.Fatalf("publish: %d %s", resp.StatusCode, body)
			}
		}
	}
	cursor := "a::0,b::0,c::0"
	seen := map[string]uint64{}
	polls := 0
	for total := 0; total < len(chans)*perChan; polls++ {
		if polls > 20 {
			t.Fatalf("still not caught up after %d polls (%d messages)", polls, total)
		}
		resp, body := do(t, "GET", fmt.Sprintf("%s/v1/poll?channel=a&channel=b&channel=c&timeout=0&cursor=%s", h.URL, cursor), "")
		if resp.StatusCode != 200 {
			t.Fatalf("poll: %d %s", resp.StatusCode, body)
		}
		if len(body) > 5<<20 {
			t.Fatalf("answer of %d bytes: not bounded", len(body))
		}
		var ans msg.PollResponse
		if err := json.Unmarshal(body, &ans); err != nil {
			t.Fatal(err)
		}
		if len(ans.Gaps) != 0 {
			t.Fatalf("gaps %v", ans.Gaps)
		}
		for _, m := range ans.Messages {
			if m.Offset != seen[m.Channel]+1 {
				t.Fatalf("%s: offset %d after %d", m.Channel, m.Offset, seen[m.Channel])
			}
			seen[m.Channel] = m.Offset
			total++
		}
		cursor = ans.Cursor
	}
	if polls < 2 {
		t.Fatalf("a 7 MB backlog came in %d answer(s)", polls)
	}
	for _, ch := range chans {
		if seen[ch] != perChan {
			t.Fatalf("%s: got up to %d, want %d", ch, seen[ch], perChan)
		}
	}
}

// TestStreamBacklogBeyondQueue: a stream resuming with more backlog than
// the session queue holds gets all of it (replay is bounded by history,
// not by the live queue), then live messages.
func TestStreamBacklogBeyondQueue(t *testing.T) {
	h := hubtest.Start(t, &hubtest.Options{Hub: hub.Config{QueueMessages: 16}})
	for _, ch := range []string{"a", "b", "c"} {
		for i := range 100 {
			do(t, "POST", h.URL+"/v1/channels/"+ch+"/messages", fmt.Sprint(i))
		}
	}
	resp, err := http.Get(h.URL + "/v1/stream?channel=a&channel=b&channel=c&cursor=a::0,b::0,c::0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	seen := map[string]uint64{}
	for n := 0; n < 301 && sc.Scan(); {
		var m msg.Envelope
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if m.Type != "message" {
			continue
		}
		if m.Offset != seen[m.Channel]+1 {
			t.Fatalf("%s: offset %d after %d", m.Channel, m.Offset, seen[m.Channel])
		}
		seen[m.Channel] = m.Offset
		n++
		if n == 300 {
			do(t, "POST", h.URL+"/v1/channels/b/messages", `"live"`)
		}
	}
	if seen["a"] != 100 || seen["b"] != 101 || seen["c"] != 100 {
		t.Fatalf("got %v (stream error %v)", seen, sc.Err())
	}
}
