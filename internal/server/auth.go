package server

import (
	"context"
	"errors"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// Claims are the claims of a duplex access token (HS256 JWT): the standard
// ones (sub and exp are used) and the channel globs the bearer may
// subscribe to (read: subscribe on every transport, history, channel info)
// and publish to. A glob is a path.Match pattern, so "chat:*" matches every
// channel that starts with "chat:", and "*" every channel.
type Claims struct {
	jwt.RegisteredClaims
	Subscribe []string `json:"subscribe,omitempty"`
	Publish   []string `json:"publish,omitempty"`
}

// Action is what a token must allow on a channel.
type Action int

// Actions.
const (
	ActionSubscribe Action = iota // read: subscribe, history, channel info
	ActionPublish
)

func (a Action) String() string {
	if a == ActionPublish {
		return "publish"
	}
	return "subscribe"
}

// Allows reports whether c grants action on channel.
func (c *Claims) Allows(action Action, channel string) bool {
	globs := c.Subscribe
	if action == ActionPublish {
		globs = c.Publish
	}
	for _, g := range globs {
		if ok, err := path.Match(g, channel); err == nil && ok {
			return true
		}
	}
	return false
}

// NewToken mints an HS256 token for claims with secret.
func NewToken(secret []byte, c Claims) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

type claimsKey struct{}

// authenticate checks the request's token when the server has a secret. It
// returns the request to go on with (its context holding the claims), or
// writes 401 and returns nil. /v1/echo and everything outside /v1/ are
// open: echo is the judge of proxy checks, and health, metrics and the web
// client carry no channel data.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *http.Request {
	if len(s.cfg.JWTSecret) == 0 || !strings.HasPrefix(r.URL.Path, "/v1/") || r.URL.Path == "/v1/echo" {
		return r
	}
	if r.Method == http.MethodOptions {
		return r // CORS preflights carry no credentials
	}
	raw := ""
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			writeError(w, msg.Errorf(msg.CodeUnauthorized, "Authorization must be \"Bearer <token>\""))
			return nil
		}
		raw = strings.TrimSpace(tok)
	} else {
		// Browsers cannot set headers on WebSocket and EventSource.
		raw = r.URL.Query().Get("token")
	}
	if raw == "" {
		writeError(w, msg.Errorf(msg.CodeUnauthorized, "a token is required: Authorization: Bearer <token>, or token= in the query"))
		return nil
	}
	c, err := s.parseToken(raw)
	if err != nil {
		writeError(w, msg.Errorf(msg.CodeUnauthorized, "invalid token: %v", err))
		return nil
	}
	return r.WithContext(context.WithValue(r.Context(), claimsKey{}, c))
}

func (s *Server) parseToken(raw string) (*Claims, error) {
	if len(raw) > 8192 {
		return nil, errors.New("token too long")
	}
	c := &Claims{}
	_, err := jwt.ParseWithClaims(raw, c, func(*jwt.Token) (any, error) { return s.cfg.JWTSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(tokenLeeway))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// tokenLeeway is how long past its exp a token still counts, for clocks
// that differ a little.
const tokenLeeway = 5 * time.Second

// expireWith closes sess with 1008 (policy) when the token that opened it
// (ctx's claims) expires, so a connection does not outlive its token. It
// returns the watch's stop, to call when sess is released; without a token
// it does nothing.
func expireWith(ctx context.Context, sess *hub.Session) (stop func() bool) {
	c, _ := ctx.Value(claimsKey{}).(*Claims)
	if c == nil || c.ExpiresAt == nil {
		return func() bool { return false }
	}
	t := time.AfterFunc(time.Until(c.ExpiresAt.Add(tokenLeeway)), func() {
		sess.Close(msg.ClosePolicy, "token expired")
	})
	return t.Stop
}

// authorize returns a 403 error unless the request's token allows action on
// channel. Without a secret everything is allowed.
func (s *Server) authorize(ctx context.Context, action Action, channel string) error {
	if len(s.cfg.JWTSecret) == 0 {
		return nil
	}
	c, _ := ctx.Value(claimsKey{}).(*Claims)
	if c == nil {
		return msg.Errorf(msg.CodeUnauthorized, "no token")
	}
	if !c.Allows(action, channel) {
		return msg.Errorf(msg.CodeForbidden, "the token does not allow %s on %q", action, channel)
	}
	return nil
}
