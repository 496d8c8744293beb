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
)

// wsPeerReport is what e2e/node/ws_client.js and e2e/python/ws_client.py
// print.
type wsPeerReport struct {
	Protocol  string `json:"protocol"`
	Subscribe struct {
		ID     int    `json:"id"`
		Type   string `json:"type"`
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
	} `json:"subscribe"`
	Publishes []struct {
		ID     string `json:"id"`
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
		Time   int64  `json:"time"`
	} `json:"publishes"`
	Messages []struct {
		Offset uint64          `json:"offset"`
		Epoch  string          `json:"epoch"`
		Data   json.RawMessage `json:"data"`
	} `json:"messages"`
	History struct {
		ID      string   `json:"id"`
		Type    string   `json:"type"`
		Offsets []uint64 `json:"offsets"`
		Next    uint64   `json:"next"`
	} `json:"history"`
	Unsubscribe struct{ ID, Type string } `json:"unsubscribe"`
	Pong        struct{ ID, Type string } `json:"pong"`
	Unknown     struct {
		ID   int    `json:"id"`
		Type string `json:"type"`
		Code string `json:"code"`
	} `json:"unknown"`
	Order []string `json:"order"`
	Close struct {
		Code int `json:"code"`
	} `json:"close"`
	Timeout string `json:"timeout"`
	Error   string `json:"error"`
}

// wsNeedPeers fails (never skips) when node with npm ws, or Debian's
// python3-websockets / python3-autobahn, are missing.
func wsNeedPeers(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is missing: run ./scripts/test, which installs the test peers (%v)", err)
	}
	if out, err := exec.Command("node", "-e", "require.resolve('./node/node_modules/ws')").CombinedOutput(); err != nil {
		t.Fatalf("npm ws missing in e2e/node: run ./scripts/test (or npm ci in e2e/node): %v %s", err, out)
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import websockets, autobahn.twisted, twisted").CombinedOutput(); err != nil {
		t.Fatalf("python3-websockets / python3-autobahn / python3-twisted missing: run ./scripts/test: %v %s", err, out)
	}
}

// TestWSPeerClients: npm ws and python3-websockets each drive every command
// over one connection, publishing while they receive.
func TestWSPeerClients(t *testing.T) {
	wsNeedPeers(t)
	h := hubtest.Start(t, nil)
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	for i, peer := range []struct {
		name string
		cmd  []string
	}{
		{"node-ws", []string{"node", "node/ws_client.js"}},
		{"python-websockets", []string{"/usr/bin/python3", "python/ws_client.py"}},
	} {
		t.Run(peer.name, func(t *testing.T) {
			channel := fmt.Sprintf("peer%d", i)
			const pre, n = 3, 20
			for k := 1; k <= pre; k++ {
				postMessage(t, hc, h.URL, channel, -k)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append(peer.cmd[1:], "ws://"+h.Addr+"/v1/ws", channel, fmt.Sprint(pre))
			out, err := exec.CommandContext(ctx, peer.cmd[0], args...).Output()
			if err != nil {
				t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", peer.name, err, out, stderrOf(err))
			}
			var r wsPeerReport
			if err := json.Unmarshal(out, &r); err != nil {
				t.Fatalf("report %q: %v", out, err)
			}
			if r.Protocol != "duplex.v1" {
				t.Errorf("subprotocol %q, want duplex.v1", r.Protocol)
			}
			if r.Subscribe.Type != "ok" || r.Subscribe.ID != 1 || r.Subscribe.Offset != pre || r.Subscribe.Epoch == "" {
				t.Errorf("subscribe reply %+v", r.Subscribe)
			}
			epoch := r.Subscribe.Epoch
			if len(r.Messages) != pre+n {
				t.Fatalf("%d messages, want %d", len(r.Messages), pre+n)
			}
			for k, m := range r.Messages {
				// The replay (what the test posted), then the peer's own.
				want := fmt.Sprintf(`{"n":%d,"s":"ünïcødé"}`, k+1-pre)
				if k < pre {
					want = fmt.Sprint(-(k + 1))
				}
				var got any
				json.Unmarshal(m.Data, &got)
				norm, _ := json.Marshal(got)
				var wantV any
				json.Unmarshal([]byte(want), &wantV)
				wantNorm, _ := json.Marshal(wantV)
				if m.Offset != uint64(k+1) || m.Epoch != epoch || string(norm) != string(wantNorm) {
					t.Fatalf("message %d: offset %d epoch %s data %s, want offset %d data %s", k, m.Offset, m.Epoch, m.Data, k+1, want)
				}
			}
			for k, p := range r.Publishes {
				if p.ID != fmt.Sprintf("p%d", k+1) || p.Offset != uint64(pre+k+1) || p.Epoch != epoch || p.Time == 0 {
					t.Fatalf("publish reply %d: %+v", k, p)
				}
			}
			if r.History.ID != "h" || r.History.Type != "ok" || fmt.Sprint(r.History.Offsets) != "[4 5 6 7 8]" || r.History.Next != 8 {
				t.Errorf("history %+v", r.History)
			}
			if r.Unsubscribe.ID != "u" || r.Unsubscribe.Type != "ok" {
				t.Errorf("unsubscribe %+v", r.Unsubscribe)
			}
			if r.Pong.ID != "x" || r.Pong.Type != "pong" {
				t.Errorf("ping %+v", r.Pong)
			}
			if r.Unknown.ID != 99 || r.Unknown.Type != "error" || r.Unknown.Code != "bad_request" {
				t.Errorf("unknown type %+v", r.Unknown)
			}
			if r.Close.Code != 1000 {
				t.Errorf("close %+v, want 1000", r.Close)
			}
			// Replies and messages did interleave on the one connection.
			t.Logf("%s frame order: %v", peer.name, r.Order)
		})
	}
}
