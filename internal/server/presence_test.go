package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/duplexhq/duplex/internal/bench"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

var presenceSecret = []byte("presence-test-secret")

// startPresenceHub starts a hub with presence on room:* and tokens on.
func startPresenceHub(t *testing.T) *hubtest.Hub {
	return hubtest.Start(t, &hubtest.Options{
		Hub:    hub.Config{Presence: func(ch string) bool { return strings.HasPrefix(ch, "room:") }, MaxPresenceInfo: 64},
		Server: server.Config{JWTSecret: presenceSecret, PresencePollLinger: 100 * time.Millisecond},
	})
}

// userToken is a token of user (empty: no sub) that may subscribe to subs.
func userToken(t *testing.T, user string, subs ...string) string {
	t.Helper()
	tok, err := server.NewToken(presenceSecret, server.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: user, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Subscribe:        subs, Publish: subs,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// anyFrame is any frame of the presence tests, decoded loosely.
type anyFrame struct {
	ID      json.RawMessage `json:"id"`
	Type    string          `json:"type"`
	Code    string          `json:"code"`
	Channel string          `json:"channel"`
	Offset  uint64          `json:"offset"`
	Client  string          `json:"client"`
	User    string          `json:"user"`
	Info    json.RawMessage `json:"info"`
	Clients int             `json:"clients"`
	Users   int             `json:"users"`
	Members []msg.Member    `json:"members"`
}

func wsDialToken(t *testing.T, h *hubtest.Hub, tok string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+h.Addr+"/v1/ws?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(-1)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func wsNext(t *testing.T, c *websocket.Conn) anyFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f anyFrame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return f
}

// wsCall sends a command and returns its reply, failing on any other frame.
func wsCall(t *testing.T, c *websocket.Conn, frame string) anyFrame {
	t.Helper()
	wsSend(t, c, frame)
	for {
		// Messages, joins and leaves of the connection's subscriptions
		// may come first.
		if f := wsNext(t, c); f.Type == "ok" || f.Type == "error" {
			return f
		}
	}
}

// watch describes what the watcher saw: "join:<transport>" etc. are
// checked by the caller from the frame itself.
func nextEventOf(t *testing.T, c *websocket.Conn) anyFrame {
	t.Helper()
	f := wsNext(t, c)
	if f.Type != "join" && f.Type != "leave" && f.Type != "message" {
		t.Fatalf("watcher got %+v", f)
	}
	return f
}

func presenceGet(t *testing.T, h *hubtest.Hub, tok, channel, query string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.URL+"/v1/channels/"+channel+"/presence"+query, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func membersOf(t *testing.T, h *hubtest.Hub, tok, channel string) map[string]msg.Member {
	t.Helper()
	code, b := presenceGet(t, h, tok, channel, "")
	if code != 200 {
		t.Fatalf("presence: %d %s", code, b)
	}
	var l msg.PresenceList
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	out := map[string]msg.Member{}
	for _, m := range l.Members {
		out[m.Client] = m
	}
	return out
}

// TestPresenceEveryTransport: a member per transport, seen with its user,
// transport and info by GET presence, the WebSocket commands and the
// stats; joins and leaves reach a watcher, in order with the channel's
// messages and without offsets; every member leaves when its reader goes.
func TestPresenceEveryTransport(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := startPresenceHub(t)
	hc := testClient(t)
	ch := "room:1"
	reader := userToken(t, "reader", "room:*")

	w := wsDialToken(t, h, userToken(t, "watch", "room:*"))
	if f := wsCall(t, w, `{"id":1,"type":"subscribe","channel":"room:1","join_leave":true,"info":{"role":"watch"}}`); f.Type != "ok" {
		t.Fatalf("subscribe: %+v", f)
	}
	self := nextEventOf(t, w)
	if self.Type != "join" || self.User != "watch" || string(self.Info) != `{"role":"watch"}` || self.Offset != 0 {
		t.Fatalf("own join: %+v", self)
	}
	wantJoin := func(user, info string) string {
		t.Helper()
		f := nextEventOf(t, w)
		if f.Type != "join" || f.User != user || string(f.Info) != info || f.Channel != ch {
			t.Fatalf("want the join of %s with %s, got %+v", user, info, f)
		}
		return f.Client
	}
	wantMessage := func(off uint64) {
		t.Helper()
		if f := nextEventOf(t, w); f.Type != "message" || f.Offset != off {
			t.Fatalf("want message %d, got %+v", off, f)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// WebSocket.
	ann := wsDialToken(t, h, userToken(t, "ann", "room:*"))
	if f := wsCall(t, ann, `{"id":1,"type":"subscribe","channel":"room:1","info":{"n":1}}`); f.Type != "ok" {
		t.Fatalf("subscribe: %+v", f)
	}
	annID := wantJoin("ann", `{"n":1}`)
	wsPublishREST(t, h, ch, `{"m":1}`)
	wantMessage(1)

	// SSE, with join_leave=1: it sees the NDJSON reader's join as an
	// event without an id, and its cursor does not move.
	sseCtx, sseStop := context.WithCancel(ctx)
	sse := get(t, sseCtx, hc, h.URL+"/v1/sse?channel=room:1&join_leave=1&info="+url.QueryEscape(`{"t":"sse"}`)+"&token="+userToken(t, "bob", "room:*"))
	bobID := wantJoin("bob", `{"t":"sse"}`)
	sr := bench.NewSSEReader(sse.Body)
	if ev := nextEvent(t, sr, true); ev.Type != "join" || !strings.Contains(string(ev.Data), `"user":"bob"`) {
		t.Fatalf("sse: own join %+v", ev)
	}
	sseID := ""

	// NDJSON.
	stCtx, stStop := context.WithCancel(ctx)
	st := get(t, stCtx, hc, h.URL+"/v1/stream?channel=room:1&token="+userToken(t, "cat", "room:*"))
	catID := wantJoin("cat", "null")
	if ev := nextEvent(t, sr, true); ev.Type != "join" || !strings.Contains(string(ev.Data), `"client":"`+catID+`"`) || ev.ID != sseID && sseID != "" {
		t.Fatalf("sse: join of cat %+v", ev)
	}
	wsPublishREST(t, h, ch, `{"m":2}`)
	wantMessage(2)
	if ev := nextEvent(t, sr, true); ev.Type != "message" {
		t.Fatalf("sse: %+v", ev)
	}

	// Long poll, no user, its own client id.
	pollDone := make(chan msg.PollResponse, 1)
	pollCtx, pollStop := context.WithCancel(ctx)
	go func() {
		pollDone <- pollQuiet(pollCtx, hc, h.URL+"/v1/poll?channel=room:1&client=p-1&timeout=50&token="+userToken(t, "", "room:*"))
	}()
	if id := wantJoin("", "null"); id != "p-1" {
		t.Fatalf("poll client %q, want p-1", id)
	}

	ms := membersOf(t, h, reader, ch)
	want := map[string][2]string{self.Client: {"watch", "ws"}, annID: {"ann", "ws"}, bobID: {"bob", "sse"}, catID: {"cat", "stream"}, "p-1": {"", "poll"}}
	if len(ms) != len(want) {
		t.Fatalf("members %+v, want %v", ms, want)
	}
	for id, uw := range want {
		if m := ms[id]; m.User != uw[0] || m.Transport != uw[1] || m.Joined == 0 {
			t.Fatalf("member %s: %+v, want %v", id, m, uw)
		}
	}
	if string(ms[annID].Info) != `{"n":1}` || string(ms[catID].Info) != "null" {
		t.Fatalf("infos: %s %s", ms[annID].Info, ms[catID].Info)
	}
	code, b := presenceGet(t, h, reader, ch, "?stats=1")
	if code != 200 || string(b) != `{"channel":"room:1","clients":5,"users":4}`+"\n" && string(b) != `{"channel":"room:1","clients":5,"users":4}` {
		t.Fatalf("stats: %d %s", code, b)
	}
	if f := wsCall(t, ann, `{"id":"s","type":"presence_stats","channel":"room:1"}`); f.Type != "ok" || f.Clients != 5 || f.Users != 4 || string(f.ID) != `"s"` {
		t.Fatalf("presence_stats: %+v", f)
	}
	if f := wsCall(t, ann, `{"id":"p","type":"presence","channel":"room:1"}`); f.Type != "ok" || len(f.Members) != 5 {
		t.Fatalf("presence: %+v", f)
	}
	// Message 1 went to the watcher and ann, message 2 to them and the
	// SSE and NDJSON readers: six, none for the joins.
	if got := h.Hub.Stats().Delivered; got != 6 {
		t.Fatalf("delivered %d: joins and leaves counted as messages?", got)
	}

	// Leaves, one transport after the other.
	leaves := []string{}
	wantLeave := func(id string) {
		t.Helper()
		f := nextEventOf(t, w)
		if f.Type != "leave" || f.Client != id {
			t.Fatalf("want the leave of %s, got %+v", id, f)
		}
		leaves = append(leaves, f.User)
	}
	ann.Close(websocket.StatusNormalClosure, "")
	wantLeave(annID)
	stStop()
	st.Body.Close()
	wantLeave(catID)
	pollStop()
	<-pollDone
	wantLeave("p-1") // after the poll linger
	sseStop()
	sse.Body.Close()
	wantLeave(bobID)
	if !slices.Equal(leaves, []string{"ann", "cat", "", "bob"}) {
		t.Fatalf("leaves %v", leaves)
	}
	if ms := membersOf(t, h, reader, ch); len(ms) != 1 || ms[self.Client].User != "watch" {
		t.Fatalf("members after the leaves: %+v", ms)
	}
	w.Close(websocket.StatusNormalClosure, "")
	waitSessions(t, h, 0)
}

// pollQuiet is one long poll whose failure (the test cancelling it) is
// not an error.
func pollQuiet(ctx context.Context, c *http.Client, u string) msg.PollResponse {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := c.Do(req)
	if err != nil {
		return msg.PollResponse{}
	}
	defer resp.Body.Close()

	var pr msg.PollResponse
	json.NewDecoder(resp.Body).Decode(&pr)
	return pr
}

// TestPresencePollJoinLeave: a long poll with join_leave=1 answers with a
// join, in messages, and its cursor does not move; polling again with the
// same client= within the linger is one member, not a leave and a join.
func TestPresencePollJoinLeave(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := startPresenceHub(t)
	hc := testClient(t)
	tok := userToken(t, "u", "room:*")
	ctx := context.Background()
	p1 := wsPublishREST(t, h, "room:2", `1`)
	cursor := "room:2:" + p1.Epoch + ":1"
	url := h.URL + "/v1/poll?channel=room:2&client=watcher&join_leave=1&timeout=20&cursor=" + cursor + "&token=" + tok
	// The first poll answers at once with its own join, in messages; the
	// cursor stays where it was.
	pr := pollQuiet(ctx, hc, url)
	if len(pr.Messages) != 1 || pr.Messages[0].Type != "join" || pr.Messages[0].Offset != 0 || pr.Cursor != cursor {
		t.Fatalf("first poll %+v, want its own join and cursor %q", pr, cursor)
	}
	// Polling again within the linger, the same client is no new member:
	// this poll waits, and answers with the next join.
	done := make(chan msg.PollResponse, 1)
	go func() { done <- pollQuiet(ctx, hc, url) }()
	waitSubscribers(t, h, "room:2", 1)
	other := wsDialToken(t, h, userToken(t, "o", "room:*"))
	wsCall(t, other, `{"id":1,"type":"subscribe","channel":"room:2"}`)
	pr = <-done
	if len(pr.Messages) != 1 || pr.Messages[0].Type != "join" || pr.Cursor != cursor {
		t.Fatalf("second poll %+v, want the join of the other", pr)
	}
	var ev msg.PresenceEvent
	raw, _ := json.Marshal(pr.Messages[0])
	json.Unmarshal(raw, &ev)
	if ms := membersOf(t, h, tok, "room:2"); len(ms) != 2 || ms["watcher"].Transport != "poll" || ms["watcher"].User != "u" {
		t.Fatalf("members %+v", ms)
	}
	other.Close(websocket.StatusNormalClosure, "")
	waitSessions(t, h, 0)
}

// TestPresenceErrors: info over its bound, presence outside the glob, a
// token that may not subscribe.
func TestPresenceErrors(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := startPresenceHub(t)
	hc := testClient(t)
	tok := userToken(t, "u", "room:*", "plain")
	c := wsDialToken(t, h, tok)
	big := `{"x":"` + strings.Repeat("a", 100) + `"}`
	for _, tc := range []struct{ frame, code string }{
		{`{"id":1,"type":"subscribe","channel":"room:1","info":` + big + `}`, "info_too_large"},
		{`{"id":2,"type":"subscribe","channel":"plain","join_leave":true}`, "presence_disabled"},
		{`{"id":3,"type":"subscribe","channel":"plain","info":{"a":1}}`, "presence_disabled"},
		{`{"id":4,"type":"presence","channel":"plain"}`, "presence_disabled"},
		{`{"id":5,"type":"presence_stats","channel":"plain"}`, "presence_disabled"},
		{`{"id":6,"type":"presence","channel":"news"}`, "forbidden"},
		{`{"id":7,"type":"presence_stats"}`, "bad_request"},
		{`{"id":8,"type":"subscribe","channel":"room:1","info":"x","join_leave":1}`, "bad_request"},
	} {
		if f := wsCall(t, c, tc.frame); f.Type != "error" || f.Code != tc.code {
			t.Fatalf("%s: %+v, want %s", tc.frame, f, tc.code)
		}
	}
	// A plain channel still subscribes, and is no member anywhere.
	if f := wsCall(t, c, `{"id":9,"type":"subscribe","channel":"plain"}`); f.Type != "ok" {
		t.Fatalf("plain subscribe: %+v", f)
	}
	if f := wsCall(t, c, `{"id":10,"type":"presence_stats","channel":"room:1"}`); f.Type != "ok" || f.Clients != 0 {
		t.Fatalf("no member after refused subscribes: %+v", f)
	}
	for _, tc := range []struct {
		path   string
		status int
		code   msg.Code
	}{
		{"/v1/sse?channel=room:1&info=" + url.QueryEscape(big), 413, msg.CodeInfoTooLarge},
		{"/v1/stream?channel=plain&join_leave=1", 404, msg.CodePresenceOff},
		{"/v1/poll?channel=room:1&info=notjson", 400, msg.CodeInvalidJSON},
		{"/v1/poll?channel=room:1&client=" + url.QueryEscape("bad id"), 400, msg.CodeBadRequest},
		{"/v1/sse?channel=room:1&client=x", 400, msg.CodeBadRequest},
		{"/v1/sse?channel=room:1&join_leave=yes", 400, msg.CodeBadRequest},
		{"/v1/channels/plain/presence", 404, msg.CodePresenceOff},
		{"/v1/channels/plain/presence?stats=1", 404, msg.CodePresenceOff},
		{"/v1/channels/news/presence", 403, msg.CodeForbidden},
		{"/v1/channels/room:1/presence?stats=2", 400, msg.CodeBadRequest},
	} {
		sep := "&"
		if !strings.Contains(tc.path, "?") {
			sep = "?"
		}
		resp := get(t, context.Background(), hc, h.URL+tc.path+sep+"token="+tok)
		code, _ := errorCode(t, resp)
		if resp.StatusCode != tc.status || code != tc.code {
			t.Fatalf("%s: %d %s, want %d %s", tc.path, resp.StatusCode, code, tc.status, tc.code)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	waitSessions(t, h, 0)
}
