package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/duplexhq/duplex/internal/redistest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

// Presence across hub processes on one Redis: members are kept in Redis,
// joins and leaves travel with the channel's messages, and the members of
// a hub killed with SIGKILL expire and are announced as leaving.

const presenceE2ESecret = "presence-e2e-secret"

func presenceToken(t *testing.T, user string) string {
	t.Helper()
	tok, err := server.NewToken([]byte(presenceE2ESecret), server.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: user, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Subscribe:        []string{"room:*"}, Publish: []string{"room:*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// presenceFrame is any frame a watcher reads, decoded loosely.
type presenceFrame struct {
	Type    string          `json:"type"`
	Code    string          `json:"code"`
	Channel string          `json:"channel"`
	Offset  uint64          `json:"offset"`
	Client  string          `json:"client"`
	User    string          `json:"user"`
	Info    json.RawMessage `json:"info"`
}

// presenceWS is a WebSocket of one user, subscribed to room with
// join_leave and info.
func presenceWS(t *testing.T, hubURL, user, room string, joinLeave bool, info string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hubURL, "http")+"/v1/ws?token="+presenceToken(t, user), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	cmd := `{"id":1,"type":"subscribe","channel":"` + room + `","join_leave":` + strconv.FormatBool(joinLeave) + `,"info":` + info + `}`
	if err := c.Write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		t.Fatal(err)
	}
	if f := readPresenceFrame(t, c); f.Type != "ok" {
		t.Fatalf("subscribe on %s: %+v", hubURL, f)
	}
	return c
}

func readPresenceFrame(t *testing.T, c *websocket.Conn) presenceFrame {
	t.Helper()
	// A bound for a broken hub, not a speed requirement.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var f presenceFrame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return f
}

// waitEvent reads c until the event typ of user comes, skipping other
// joins, leaves and messages.
func waitEvent(t *testing.T, c *websocket.Conn, typ, user string) presenceFrame {
	t.Helper()
	for {
		f := readPresenceFrame(t, c)
		if f.Type == typ && f.User == user {
			return f
		}
		if f.Type != "join" && f.Type != "leave" && f.Type != "message" {
			t.Fatalf("waiting for %s of %s: %+v", typ, user, f)
		}
	}
}

func presenceHTTP(t *testing.T, hubURL, room, query string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, hubURL+"/v1/channels/"+room+"/presence"+query, nil)
	req.Header.Set("Authorization", "Bearer "+presenceToken(t, "reader"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("presence on %s: %s %s", hubURL, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// TestRedisPresenceThreeHubs: three hubs on one Redis with
// --presence-ttl 3s. A member joining on A is seen on B and C, with its
// user and info; joins and leaves reach watchers on all three, in order
// with the messages; kill -9 of A: its member expires (Redis holds an
// expiry within the TTL of its last refresh) and B's and C's watchers get
// its leave.
func TestRedisPresenceThreeHubs(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	const ttl = 3 * time.Second
	hubs := startHubProcs(t, 3, srv.URL(), "--presence", "room:*", "--presence-ttl", ttl.String(), "--jwt-secret", presenceE2ESecret)
	room := "room:e2e"
	watchers := make([]*websocket.Conn, 3)
	for i, h := range hubs {
		watchers[i] = presenceWS(t, h.URL, "watcher"+strconv.Itoa(i), room, true, "null")
	}
	// Each watcher sees the ones that came after it.
	for i := range watchers {
		for j := i; j < len(watchers); j++ {
			waitEvent(t, watchers[i], "join", "watcher"+strconv.Itoa(j))
		}
	}

	alice := presenceWS(t, hubs[0].URL, "alice", room, false, `{"name":"Alice"}`)
	var aliceID string
	for i, w := range watchers {
		f := waitEvent(t, w, "join", "alice")
		if string(f.Info) != `{"name":"Alice"}` || f.Offset != 0 || f.Channel != room {
			t.Fatalf("watcher %d: join %+v", i, f)
		}
		if aliceID == "" {
			aliceID = f.Client
		} else if f.Client != aliceID {
			t.Fatalf("watcher %d: client %q, others saw %q", i, f.Client, aliceID)
		}
	}
	defer alice.CloseNow()
	// Seen on B and C, over HTTP.
	for _, h := range hubs[1:] {
		var l msg.PresenceList
		presenceHTTP(t, h.URL, room, "", &l)
		found := false
		for _, m := range l.Members {
			if m.Client == aliceID {
				found = m.User == "alice" && m.Transport == "ws" && string(m.Info) == `{"name":"Alice"}`
			}
		}
		if !found || len(l.Members) != 4 {
			t.Fatalf("members on %s: %+v", h.Name, l.Members)
		}
		var st msg.PresenceStats
		presenceHTTP(t, h.URL, room, "?stats=1", &st)
		if st.Clients != 4 || st.Users != 4 {
			t.Fatalf("stats on %s: %+v", h.Name, st)
		}
	}

	// A message published on C, then an SSE member joining on C: every
	// watcher gets them in that order.
	if status, _, err := postToken(hubs[2].URL, room, `{"n":1}`, presenceToken(t, "pub")); err != nil || status != 201 {
		t.Fatalf("publish: %d %v", status, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hubs[2].URL+"/v1/sse?channel="+room+"&token="+presenceToken(t, "bob"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	go io.Copy(io.Discard, bufio.NewReader(resp.Body))
	for i, w := range watchers {
		if f := readPresenceFrame(t, w); f.Type != "message" || f.Offset != 1 {
			t.Fatalf("watcher %d: %+v, want message 1", i, f)
		}
		if f := readPresenceFrame(t, w); f.Type != "join" || f.User != "bob" {
			t.Fatalf("watcher %d: %+v, want bob's join", i, f)
		}
	}

	// Redis holds alice's expiry: within the TTL of now, as A refreshes
	// it every TTL/4 to 3/4 of the TTL ahead.
	nowMs := redisTimeMs(t, srv)
	score, err := srv.Do("ZSCORE", "duplex:{"+room+"}:pz", aliceID)
	if err != nil || len(score) != 1 {
		t.Fatalf("ZSCORE: %v %v", score, err)
	}
	exp, _ := strconv.ParseFloat(score[0], 64)
	if int64(exp) > nowMs+ttl.Milliseconds() || int64(exp) < nowMs {
		t.Fatalf("alice expires at %d, now is %d: not within the TTL %v", int64(exp), nowMs, ttl)
	}

	hubs[0].Kill9()
	// Both of A's members leave, in the order the sweep found them.
	for i, w := range watchers[1:] {
		left := map[string]presenceFrame{}
		for len(left) < 2 {
			f := readPresenceFrame(t, w)
			if f.Type != "leave" {
				t.Fatalf("watcher %d: %+v, want the leaves of A's members", i+1, f)
			}
			left[f.User] = f
		}
		if f := left["alice"]; f.Client != aliceID || string(f.Info) != `{"name":"Alice"}` {
			t.Fatalf("watcher %d: leaves %+v", i+1, left)
		}
		if _, ok := left["watcher0"]; !ok {
			t.Fatalf("watcher %d: leaves %+v", i+1, left)
		}
	}
	var st msg.PresenceStats
	presenceHTTP(t, hubs[1].URL, room, "?stats=1", &st)
	if st.Clients != 3 || st.Users != 3 {
		t.Fatalf("stats after the kill: %+v (want watchers 1 and 2, bob)", st)
	}
	cancel()
	for _, w := range watchers[1:] {
		if f := readPresenceFrame(t, w); f.Type != "leave" || f.User != "bob" {
			t.Fatalf("%+v, want bob's leave", f)
		}
	}
}

// redisTimeMs is Redis's clock, which the expiry scores use.
func redisTimeMs(t *testing.T, srv *redistest.Server) int64 {
	t.Helper()
	r, err := srv.Do("TIME")
	if err != nil || len(r) != 2 {
		t.Fatalf("TIME: %v %v", r, err)
	}
	s, _ := strconv.ParseInt(r[0], 10, 64)
	us, _ := strconv.ParseInt(r[1], 10, 64)
	return s*1000 + us/1000
}

// postToken publishes data on channel of hubURL with a bearer token.
func postToken(hubURL, channel, data, tok string) (int, []byte, error) {
	req, _ := http.NewRequest(http.MethodPost, hubURL+"/v1/channels/"+channel+"/messages", strings.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}
