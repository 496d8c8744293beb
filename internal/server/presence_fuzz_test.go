package server

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// FuzzPresenceQuery: join_leave=, info= and client= of any query parse to
// a request whose info is compact JSON within its bound and whose client
// id is valid, or to a 4xx error with one of the documented codes.
func FuzzPresenceQuery(f *testing.F) {
	for _, s := range []string{
		"join_leave=1&info=%7B%22a%22%3A1%7D", "info=null", "info=", "join_leave=2", "client=p-1",
		"client=", "info=%7B%22a%22%3A%22" + strings.Repeat("x", 80) + "%22%7D", "info=%22%5Cud800%22", "join_leave=true&client=a.b_c",
	} {
		f.Add(s, true)
	}
	hb, err := hub.New(context.Background(), hub.Config{Engine: memory.New(memory.Config{}), MaxPresenceInfo: 64})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { hb.Shutdown(context.Background()) })
	s := &Server{hub: hb}
	f.Fuzz(func(t *testing.T, query string, poll bool) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		p, err := s.parsePresenceQuery(q, poll)
		if err != nil {
			switch c := msg.CodeOf(err); c {
			case msg.CodeBadRequest, msg.CodeInvalidJSON, msg.CodeInfoTooLarge:
			default:
				t.Fatalf("%q: error %v has code %s", query, err, c)
			}
			return
		}
		if p.Info != nil && (len(p.Info) > 64 || !json.Valid(p.Info) || string(p.Info) == "null") {
			t.Fatalf("%q: info %q", query, p.Info)
		}
		if p.Client != "" && (!poll || !msg.ValidClientID(p.Client)) {
			t.Fatalf("%q: client %q (poll %v)", query, p.Client, poll)
		}
		if p.JoinLeave != (q.Get("join_leave") == "1" || q.Get("join_leave") == "true") {
			t.Fatalf("%q: join_leave %v", query, p.JoinLeave)
		}
	})
}

// FuzzPresenceEventJSON: a join's encoding is valid JSON that decodes back
// to the event, whatever the client and user strings.
func FuzzPresenceEventJSON(f *testing.F) {
	f.Add("c1", "ann", `{"a":1}`)
	f.Add("x", "\"quote\\ \u2028 \xff", "")
	f.Add("", "\x00", "null")
	f.Fuzz(func(t *testing.T, client, user, info string) {
		var raw json.RawMessage
		if info != "" {
			c, err := msg.CompactData([]byte(info), 1<<20)
			if err != nil {
				return
			}
			raw = c
		}
		ev := hub.NewPresenceEvent(msg.TypeJoin, "room", msg.Member{Client: client, User: user, Info: raw})
		var back msg.PresenceEvent
		if err := json.Unmarshal(ev.JSON, &back); err != nil {
			t.Fatalf("%s: %v", ev.JSON, err)
		}
		if back.Type != "join" || back.Channel != "room" || viaJSON(client) != back.Client || viaJSON(user) != back.User {
			t.Fatalf("%s decoded to %+v", ev.JSON, back)
		}
	})
}

// viaJSON is s as encoding/json carries it (invalid UTF-8 replaced).
func viaJSON(s string) string {
	b, _ := json.Marshal(s)
	var out string
	json.Unmarshal(b, &out)
	return out
}
