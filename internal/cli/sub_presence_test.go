package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/msg"
)

// TestSubPresence: duplex sub --presence prints the channel's members
// (itself included, with its --info) before the messages; on a channel
// without presence it fails with the hub's reason.
func TestSubPresence(t *testing.T) {
	h := hubtest.Start(t, &hubtest.Options{Hub: hub.Config{Presence: func(ch string) bool { return strings.HasPrefix(ch, "room:") }}})
	s, err := h.Hub.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if _, err := s.Subscribe(context.Background(), "room:cli", hub.SubscribeOptions{Member: &msg.Member{Client: "other", User: "o", Transport: "ws"}}); err != nil {
		t.Fatal(err)
	}
	publishHub(t, h, "room:cli", 1, 1)
	code, out, errOut := runMain(t, context.Background(), "", "sub", "--url", h.URL, "--transport", "ws", "--proxy", "direct",
		"--presence", "--info", `{"me":1}`, "--cursor", "room:cli::0", "--count", "1", "room:cli")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var first struct {
		Type string
		msg.PresenceList
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Type != "presence" || len(first.Members) != 2 {
		t.Fatalf("first line %q (%v), want the presence with 2 members", lines[0], err)
	}
	mine := 0
	for _, m := range first.Members {
		if string(m.Info) == `{"me":1}` {
			mine++
		}
	}
	if mine != 1 {
		t.Fatalf("members %+v: want one with --info", first.Members)
	}
	if !strings.Contains(out, `"type":"message"`) {
		t.Fatalf("no message in %q", out)
	}
	code, _, errOut = runMain(t, context.Background(), "", "sub", "--url", h.URL, "--transport", "ws", "--proxy", "direct",
		"--presence", "--count", "1", "plain")
	if code == 0 || !strings.Contains(errOut, "presence_disabled") {
		t.Fatalf("plain channel: exit %d, stderr %q", code, errOut)
	}
}

// TestServePresenceFlags: a bad --presence glob and a --presence-ttl that
// is not positive are refused before the hub starts.
func TestServePresenceFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--presence", "room:["}, "--presence: glob"},
		{[]string{"--presence", "room:*", "--presence-ttl", "0s"}, "--presence-ttl must be positive"},
	} {
		var errb strings.Builder
		args := append([]string{"serve", "--listen", "127.0.0.1:0"}, tc.args...)
		if code := Main(context.Background(), args, Stdio{In: strings.NewReader(""), Out: &strings.Builder{}, Err: &errb}); code != 1 || !strings.Contains(errb.String(), tc.want) {
			t.Fatalf("%v: exit %d, stderr %q, want %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
