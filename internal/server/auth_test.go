package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

func token(t *testing.T, secret string, exp time.Duration, sub, pub []string) string {
	t.Helper()
	tok, err := server.NewToken([]byte(secret), server.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(exp))},
		Subscribe:        sub, Publish: pub,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAuth(t *testing.T) {
	const secret = "s3cret"
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{JWTSecret: []byte(secret)}})
	good := token(t, secret, time.Hour, []string{"chat:*"}, []string{"chat:room1"})
	other := token(t, "another secret", time.Hour, []string{"*"}, []string{"*"})
	expired := token(t, secret, -time.Hour, []string{"*"}, []string{"*"})
	noExp, _ := server.NewToken([]byte(secret), server.Claims{Subscribe: []string{"*"}})
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, server.Claims{Subscribe: []string{"*"},
		RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}).SignedString(jwt.UnsafeAllowNoneSignatureType)

	cases := []struct {
		name, method, path, auth string
		status                   int
	}{
		{"no token", "POST", "/v1/channels/chat:room1/messages", "", 401},
		{"bad scheme", "POST", "/v1/channels/chat:room1/messages", "Basic " + good, 401},
		{"wrong secret", "POST", "/v1/channels/chat:room1/messages", "Bearer " + other, 401},
		{"expired", "POST", "/v1/channels/chat:room1/messages", "Bearer " + expired, 401},
		{"no exp", "POST", "/v1/channels/chat:room1/messages", "Bearer " + noExp, 401},
		{"alg none", "POST", "/v1/channels/chat:room1/messages", "Bearer " + none, 401},
		{"garbage", "GET", "/v1/channels/chat:x", "Bearer a.b.c", 401},
		{"publish allowed", "POST", "/v1/channels/chat:room1/messages", "Bearer " + good, 201},
		{"publish elsewhere", "POST", "/v1/channels/chat:room2/messages", "Bearer " + good, 403},
		{"read allowed", "GET", "/v1/channels/chat:room2/messages", "Bearer " + good, 200},
		{"read outside", "GET", "/v1/channels/news/messages", "Bearer " + good, 403},
		{"info outside", "GET", "/v1/channels/news", "Bearer " + good, 403},
		{"token in query", "GET", "/v1/channels/chat:a?token=" + good, "", 200},
		{"stream outside", "GET", "/v1/stream?channel=chat:a&channel=news&token=" + good, "", 403},
		{"poll outside", "GET", "/v1/poll?channel=news&timeout=1s", "Bearer " + good, 403},
		{"sse no token", "GET", "/v1/sse?channel=chat:a", "", 401},
		{"echo is open", "GET", "/v1/echo", "", 200},
		{"healthz is open", "GET", "/healthz", "", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, h.URL+c.path, strings.NewReader(`{"x":1}`))
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, resp.StatusCode, body, c.status)
			}
			if c.status == 401 && (!strings.Contains(string(body), string(msg.CodeUnauthorized)) || resp.Header.Get("WWW-Authenticate") == "") {
				t.Fatalf("401 body %s headers %v", body, resp.Header)
			}
			if c.status == 403 && !strings.Contains(string(body), string(msg.CodeForbidden)) {
				t.Fatalf("403 body %s", body)
			}
		})
	}

	// An allowed stream really streams.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL+"/v1/stream?channel=chat:a&token="+good, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("allowed stream: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestClaimsAllows(t *testing.T) {
	c := server.Claims{Subscribe: []string{"chat:*", "news"}, Publish: []string{"[ab]*"}}
	for _, tt := range []struct {
		a    server.Action
		ch   string
		want bool
	}{
		{server.ActionSubscribe, "chat:x", true}, {server.ActionSubscribe, "chat:x:y", true},
		{server.ActionSubscribe, "chat", false}, {server.ActionSubscribe, "news", true},
		{server.ActionSubscribe, "newsy", false}, {server.ActionPublish, "alpha", true},
		{server.ActionPublish, "chat:x", false},
	} {
		if got := c.Allows(tt.a, tt.ch); got != tt.want {
			t.Errorf("Allows(%v, %q) = %v", tt.a, tt.ch, got)
		}
	}
}

// A connection does not outlive its token: when the token expires (past
// the 5 s leeway), a WebSocket is closed with 1008 and an NDJSON stream
// ends its body; one with a token still valid stays.
func TestTokenExpiryEndsConnections(t *testing.T) {
	hubtest.CheckLeaks(t)
	const secret = "s3cret"
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{JWTSecret: []byte(secret)}})
	short := token(t, secret, time.Second, []string{"*"}, nil)
	long := token(t, secret, time.Hour, []string{"*"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	dial := func(tok string) *websocket.Conn {
		c, _, err := websocket.Dial(ctx, "ws://"+h.Addr+"/v1/ws?token="+tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"id":1,"type":"subscribe","channel":"exp"}`)); err != nil {
			t.Fatal(err)
		}
		if _, b, err := c.Read(ctx); err != nil || !strings.Contains(string(b), `"ok"`) {
			t.Fatalf("subscribe: %s %v", b, err)
		}
		return c
	}
	wsShort, wsLong := dial(short), dial(long)

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/v1/stream?channel=exp", nil)
	req.Header.Set("Authorization", "Bearer "+short)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	streamDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		streamDone <- err
	}()

	// The short token's WebSocket: 1008, "token expired".
	for {
		_, _, err := wsShort.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "token expired" {
				t.Fatalf("short-token WebSocket ended with %v, want 1008 token expired", err)
			}
			break
		}
	}
	// The stream: a complete body (the chunked end), not a cut.
	if err := <-streamDone; err != nil {
		t.Fatalf("short-token stream ended with %v, want a clean end", err)
	}
	// The long token's connection still serves.
	if err := wsLong.Write(ctx, websocket.MessageText, []byte(`{"id":2,"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	if _, b, err := wsLong.Read(ctx); err != nil || !strings.Contains(string(b), `"pong"`) {
		t.Fatalf("long-token WebSocket: %s %v", b, err)
	}
	wsLong.Close(websocket.StatusNormalClosure, "")
}

// A long poll does not outlive its token either: one waiting when the
// token expires (past the leeway) is answered 401 token expired at once,
// not with the timeout's empty answer. A token whose exp passed 3-4 s ago
// (exp has whole seconds) is inside the 5 s leeway for 1-2 s more.
func TestTokenExpiryEndsLongPoll(t *testing.T) {
	hubtest.CheckLeaks(t)
	const secret = "s3cret"
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{JWTSecret: []byte(secret), PollMaxTimeout: time.Minute}})
	expiring := token(t, secret, -3*time.Second, []string{"*"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/v1/poll?channel=exp&timeout=40s", nil)
	req.Header.Set("Authorization", "Bearer "+expiring)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), string(msg.CodeUnauthorized)) ||
		!strings.Contains(string(body), "token expired") || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("poll past the token's expiry: %d %s, want 401 unauthorized token expired", resp.StatusCode, body)
	}
}
