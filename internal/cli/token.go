package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/duplexhq/duplex/internal/server"
)

func runToken(ctx context.Context, stdio Stdio, args []string) error {
	fs := newFlagSet(stdio, "token", "[flags]\n\nPrints an HS256 access token for a hub started with the same --jwt-secret.")
	var (
		secret    = fs.String("secret", envOr("DUPLEX_JWT_SECRET", ""), "the hub's secret (env DUPLEX_JWT_SECRET)")
		subject   = fs.String("sub", "", "subject: who the token is for")
		ttl       = fs.Duration("ttl", time.Hour, "how long the token is valid")
		subscribe stringList
		publish   stringList
	)
	fs.Var(&subscribe, "subscribe", "channel glob the bearer may subscribe to and read, e.g. 'chat:*' (repeatable, comma-separated)")
	fs.Var(&publish, "publish", "channel glob the bearer may publish to (repeatable, comma-separated)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if *secret == "" {
		return errors.New("--secret (or DUPLEX_JWT_SECRET) is required")
	}
	if *ttl <= 0 {
		return errors.New("--ttl must be positive")
	}
	if len(subscribe) == 0 && len(publish) == 0 {
		// Still printed: such a token authenticates (GET /v1/echo, a
		// subject in the logs), it just grants no channel, which is
		// rarely what was meant.
		fmt.Fprintln(stdio.Err, "duplex token: warning: no --subscribe or --publish: the hub will let this token neither read nor publish any channel")
	}
	now := time.Now()
	tok, err := server.NewToken([]byte(*secret), server.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   *subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(*ttl)),
		},
		Subscribe: subscribe,
		Publish:   publish,
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdio.Out, tok)
	return nil
}
