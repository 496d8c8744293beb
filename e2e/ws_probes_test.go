package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duplexhq/duplex/internal/hubtest"
)

// TestWSProtocolProbes sends deliberately broken frames with
// python3-autobahn's sendFrame (e2e/python/ws_probes.py) to /v1/ws and
// /v1/echo, and checks each is answered with the right close code, and
// that the hub is unharmed afterwards.
func TestWSProtocolProbes(t *testing.T) {
	wsNeedPeers(t)
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)

	// A subscriber that must not notice any of it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	watcher, _, err := websocket.Dial(ctx, "ws://"+h.Addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.CloseNow()
	wsCall(t, watcher, `{"id":1,"type":"subscribe","channel":"probe-watch"}`, "ok")

	out, err := exec.CommandContext(ctx, "/usr/bin/python3", "python/ws_probes.py", h.Addr).Output()
	if err != nil {
		t.Fatalf("ws_probes.py: %v\n%s\n%s", err, out, stderrOf(err))
	}
	type result struct {
		Path     string   `json:"path"`
		Probe    string   `json:"probe"`
		Code     *int     `json:"code"`
		Reason   string   `json:"reason"`
		Messages []string `json:"messages"`
		Open     bool     `json:"open"`
		Timeout  bool     `json:"timeout"`
	}
	// Expected close codes; the same on both paths unless noted.
	want := map[string]int{
		"rsv1": 1002, "rsv2": 1002, "rsv3": 1002,
		"opcode3": 1002, "opcode11": 1002,
		"fragmented_ping": 1002, "ping_126": 1002, "unmasked": 1002,
		"invalid_utf8": 1007, "invalid_utf8_fragment": 1007,
		"close_code_1004": 1002, "close_code_999": 1002, "close_code_5000": 1002,
		"close_1_byte": 1002, "close_bad_utf8_reason": 1007,
		"continuation_first": 1002, "new_message_in_fragmented": 1002,
		"ping_inside_fragmented": 1000, "close_normal": 1000,
		"binary": 1003, // /v1/echo: echoed, then 1000
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		seen++
		w, ok := want[r.Probe]
		if !ok {
			t.Errorf("unknown probe %s", r.Probe)
			continue
		}
		var msgs []string
		switch {
		case r.Probe == "binary" && r.Path == "/v1/echo":
			w, msgs = 1000, []string{`{"id":1,"type":"ping"}`}
		case r.Probe == "ping_inside_fragmented" && r.Path == "/v1/ws":
			msgs = []string{`{"id":1,"type":"pong"}`}
		case r.Probe == "ping_inside_fragmented":
			msgs = []string{`{"id":1,"type":"ping"}`}
		}
		if !r.Open || r.Timeout || r.Code == nil || *r.Code != w {
			code := "none"
			if r.Code != nil {
				code = fmt.Sprint(*r.Code)
			}
			t.Errorf("%s %s: close %s (%q), open %v, timeout %v; want %d", r.Path, r.Probe, code, r.Reason, r.Open, r.Timeout, w)
		}
		if len(r.Messages) != len(msgs) || (len(msgs) > 0 && r.Messages[0] != msgs[0]) {
			t.Errorf("%s %s: data messages %q, want %q", r.Path, r.Probe, r.Messages, msgs)
		}
	}
	if seen != 2*len(want) {
		t.Fatalf("%d probe results, want %d", seen, 2*len(want))
	}

	// The hub is unharmed: every probe's session is gone, the watcher
	// still receives, and new connections work.
	deadline := time.Now().Add(10 * time.Second)
	for h.Hub.Stats().Sessions != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("sessions left after the probes: %+v", h.Hub.Stats())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	if _, err := h.Hub.Publish(ctx, "probe-watch", []byte(`"after"`)); err != nil {
		t.Fatal(err)
	}
	if f := wsNext(t, watcher); f["type"] != "message" || f["data"] != "after" {
		t.Fatalf("watcher got %v", f)
	}
	c, _, err := websocket.Dial(ctx, "ws://"+h.Addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	wsCall(t, c, `{"id":2,"type":"ping"}`, "pong")
	c.Close(websocket.StatusNormalClosure, "")
	watcher.Close(websocket.StatusNormalClosure, "")
}

// wsCall sends a command and checks the type of the next frame.
func wsCall(t *testing.T, c *websocket.Conn, cmd, wantType string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
	f := wsNext(t, c)
	if f["type"] != wantType {
		t.Fatalf("%s: got %v, want %s", cmd, f, wantType)
	}
	return f
}

func wsNext(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return f
}
