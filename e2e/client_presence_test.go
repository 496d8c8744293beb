package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

// TestClientPresenceEveryTransport: the Go client over each transport is
// a member with its info, reads presence and stats, and gets joins and
// leaves in order with the messages.
func TestClientPresenceEveryTransport(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{
		Hub:    hub.Config{Presence: func(ch string) bool { return strings.HasPrefix(ch, "room:") }},
		Server: server.Config{PresencePollLinger: 50 * time.Millisecond},
	})
	for _, tr := range []client.Transport{client.WebSocket, client.SSE, client.Stream, client.Poll} {
		t.Run(string(tr), func(t *testing.T) {
			room := "room:" + string(tr)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := dialClient(t, h.URL, fastOpts(tr))
			sub := subscribe(t, c, []string{room}, &client.SubscribeOptions{JoinLeave: true, Info: json.RawMessage(`{"via":"` + string(tr) + `"}`)})
			next := func() client.Event {
				t.Helper()
				ev, err := sub.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return ev
			}
			// A poll's own join is not waited for: on the Redis engine it
			// comes back through pub/sub and may land between two polls,
			// where joins and leaves are lost (docs/protocol.md).
			if tr != client.Poll {
				if ev := next(); ev.Presence == nil || ev.Presence.Type != msg.TypeJoin || string(ev.Presence.Info) != `{"via":"`+string(tr)+`"}` {
					t.Fatalf("own join: %+v", ev)
				}
			}
			other := dialClient(t, h.URL, fastOpts(client.WebSocket))
			if _, err := c.Publish(ctx, room, json.RawMessage(`1`)); err != nil {
				t.Fatal(err)
			}
			osub := subscribe(t, other, []string{room}, nil)
			if _, err := c.Publish(ctx, room, json.RawMessage(`2`)); err != nil {
				t.Fatal(err)
			}
			// A long poll is a request per poll: what happens between
			// two polls reaches the next one from history (messages) or
			// not at all (joins and leaves are not history), so only the
			// streaming transports are held to the order.
			var got []string
			for msgs := 0; msgs < 2 || (tr != client.Poll && len(got) < 3); {
				ev := next()
				switch {
				case ev.Message != nil:
					got = append(got, string(ev.Message.Data))
					msgs++
				case ev.Presence != nil:
					got = append(got, ev.Presence.Type)
				}
			}
			if want := "1,join,2"; tr != client.Poll && strings.Join(got, ",") != want {
				t.Fatalf("events %v, want %s", got, want)
			}
			st, err := c.PresenceStats(ctx, room)
			if err != nil || st.Clients != 2 {
				t.Fatalf("stats %+v %v", st, err)
			}
			l, err := other.Presence(ctx, room)
			if err != nil || len(l.Members) != 2 {
				t.Fatalf("presence %+v %v", l, err)
			}
			withInfo := 0
			for _, m := range l.Members {
				if string(m.Info) == `{"via":"`+string(tr)+`"}` && m.Transport == string(tr) {
					withInfo++
				}
			}
			if withInfo != 1 {
				t.Fatalf("members %+v: want one of transport %s with its info", l.Members, tr)
			}
			osub.Close()
			for tr != client.Poll { // a poll may be between requests (see above)
				ev := next()
				if ev.Presence != nil && ev.Presence.Type == msg.TypeLeave {
					break
				}
				if ev.Presence == nil || ev.Presence.Type != msg.TypeJoin {
					t.Fatalf("want the leave, got %+v", ev)
				}
			}
			if _, err := c.Presence(ctx, "plain"); msg.CodeOf(err) != msg.CodePresenceOff {
				t.Fatalf("presence outside the glob: %v", err)
			}
			sub.Close()
		})
	}
}
