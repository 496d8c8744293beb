package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

// TestClientToken: with a JWT secret on the hub, DialOptions.Token opens
// every transport for the channels its claims allow; a missing token is
// 401 and a channel outside the claims 403 (a WebSocket error reply), and
// neither is retried.
func TestClientToken(t *testing.T) {
	hubtest.CheckLeaks(t)
	secret := []byte("test-secret")
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{JWTSecret: secret}})
	tok, err := server.NewToken(secret, server.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "t", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Subscribe:        []string{"chat:*"},
		Publish:          []string{"chat:*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range append(explicitTransports, client.Auto) {
		t.Run(string(tr), func(t *testing.T) {
			opts := fastOpts(tr)
			opts.Token = tok
			c := dialClient(t, h.URL, opts)
			ch := "chat:" + string(tr)
			s := subscribe(t, c, []string{ch}, nil)
			if tr == client.Auto && s.Transport() != client.WebSocket {
				t.Fatalf("auto uses %s with a token", s.Transport())
			}
			publishN(t, c, ch, 1, 2)
			expectMessages(t, s, map[string][2]int{ch: {1, 2}})

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.Subscribe(ctx, []string{"news"}, nil); msg.CodeOf(err) != msg.CodeForbidden || ctx.Err() != nil {
				t.Fatalf("subscribe outside the claims: %v", err)
			}
			if _, err := c.Publish(ctx, "news", []byte("1")); msg.CodeOf(err) != msg.CodeForbidden {
				t.Fatalf("publish outside the claims: %v", err)
			}

			// No token: 401, at Dial for ws and auto, else at Subscribe.
			noTok := fastOpts(tr)
			c2, err := client.Dial(ctx, h.URL, noTok)
			if err == nil {
				defer c2.Close()
				_, err = c2.Subscribe(ctx, []string{ch}, nil)
			}
			var se *client.StatusError
			if !errors.As(err, &se) || se.StatusCode != 401 || ctx.Err() != nil {
				t.Fatalf("without a token: %v", err)
			}
		})
	}
}
