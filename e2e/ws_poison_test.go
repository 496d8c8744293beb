package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hubtest"
)

// TestPoisonPublishRefused: the publishes that used to poison a channel —
// invalid UTF-8 over HTTP (sent with curl exactly as the report did) and a
// lone surrogate escape over HTTP and over WebSocket — are refused with
// invalid_json, and WebSocket subscribers of npm ws and python3-websockets
// (both fail a connection with 1007 on a text frame that is not UTF-8) stay
// connected, get the one good message, and find only it in history.
func TestPoisonPublishRefused(t *testing.T) {
	wsNeedPeers(t)
	needPeer(t, "curl")
	h := hubtest.Start(t, nil)
	for i, peer := range []struct {
		name string
		cmd  []string
	}{
		{"node-ws", []string{"node", "node/ws_poison.js"}},
		{"python-websockets", []string{"/usr/bin/python3", "python/ws_poison.py"}},
	} {
		t.Run(peer.name, func(t *testing.T) {
			channel := fmt.Sprintf("poison%d", i)
			url := h.URL + "/v1/channels/" + channel + "/messages"
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, peer.cmd[0], append(peer.cmd[1:], "ws://"+h.Addr+"/v1/ws", channel)...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := bufio.NewScanner(stdout)
			if !lines.Scan() || lines.Text() != `{"ready":true}` && lines.Text() != `{"ready": true}` {
				cmd.Wait()
				t.Fatalf("%s did not subscribe: %q, stderr %s", peer.name, lines.Text(), stderr.String())
			}

			// The report's repro, verbatim but for the address, and the
			// escape that is valid UTF-8 but no character.
			for _, poison := range []string{`printf '{"a":"\xff\xfe"}'`, `printf '{"a":"\\ud800"}'`} {
				out, err := exec.CommandContext(ctx, "bash", "-c",
					poison+` | curl -s -w '\n%{http_code}' --data-binary @- `+url).Output()
				if err != nil {
					t.Fatalf("curl: %v %s", err, stderrOf(err))
				}
				text := strings.TrimSpace(string(out))
				nl := strings.LastIndexByte(text, '\n')
				body, status := text[:max(nl, 0)], text[nl+1:]
				if status != "400" || !strings.Contains(body, `"code":"invalid_json"`) {
					t.Errorf("%s | curl: %s %s, want 400 invalid_json", poison, status, body)
				}
			}
			out, err := exec.CommandContext(ctx, "curl", "-s", "-w", "\n%{http_code}", "--data-binary", `{"n":1}`, url).Output()
			if err != nil || !strings.HasSuffix(string(out), "\n201") {
				t.Fatalf("good publish: %v %q", err, out)
			}

			rest, _ := io.ReadAll(stdout)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("%s: %v; stdout %s; stderr %s", peer.name, err, rest, stderr.String())
			}
			var r struct {
				Messages []struct {
					Offset uint64          `json:"offset"`
					Data   json.RawMessage `json:"data"`
				} `json:"messages"`
				Poison  struct{ Type, Code, Message string } `json:"poison"`
				History []struct {
					Offset uint64 `json:"offset"`
				} `json:"history"`
				Close struct {
					Code int `json:"code"`
				} `json:"close"`
			}
			if err := json.Unmarshal(rest, &r); err != nil {
				t.Fatalf("report %q: %v", rest, err)
			}
			if len(r.Messages) != 1 || r.Messages[0].Offset != 1 || compactJSON(r.Messages[0].Data) != `{"n":1}` {
				t.Errorf("messages %s, want only offset 1 {\"n\":1}", rest)
			}
			if r.Poison.Type != "error" || r.Poison.Code != "invalid_json" || !strings.Contains(r.Poison.Message, `\ud800`) {
				t.Errorf("WebSocket publish of a lone surrogate: %+v, want an invalid_json error reply naming it", r.Poison)
			}
			if len(r.History) != 1 || r.History[0].Offset != 1 {
				t.Errorf("history %+v, want only offset 1", r.History)
			}
			if r.Close.Code != 1000 {
				t.Errorf("%s closed with %d, want 1000 (1007 means it received invalid UTF-8)", peer.name, r.Close.Code)
			}
		})
	}
}

func compactJSON(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	c, _ := json.Marshal(v)
	return string(c)
}
