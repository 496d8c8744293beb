package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"

	"github.com/duplexhq/duplex/msg"
)

// Presence returns the members of channel (GET
// /v1/channels/{channel}/presence). The channel must have presence on the
// hub (--presence); otherwise the error's code is msg.CodePresenceOff.
func (c *Client) Presence(ctx context.Context, channel string) (*msg.PresenceList, error) {
	var l msg.PresenceList
	if err := c.getPresence(ctx, channel, nil, &l); err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	return &l, nil
}

// PresenceStats returns how many clients, and distinct users, are present
// in channel (?stats=1): two counters on the hub, whatever the members.
func (c *Client) PresenceStats(ctx context.Context, channel string) (*msg.PresenceStats, error) {
	var s msg.PresenceStats
	if err := c.getPresence(ctx, channel, url.Values{"stats": {"1"}}, &s); err != nil {
		return nil, fmt.Errorf("presence stats: %w", err)
	}
	return &s, nil
}

func (c *Client) getPresence(ctx context.Context, channel string, q url.Values, v any) error {
	if !msg.ValidChannel(channel) {
		return msg.Errorf(msg.CodeInvalidChannel, "invalid channel name %q", channel)
	}
	if c.isClosed() {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	req, err := c.newRequest(ctx, http.MethodGet, c.endpoint("/v1/channels/"+url.PathEscape(channel)+"/presence", q), nil)
	if err != nil {
		return err
	}
	return c.do(req, http.StatusOK, v)
}

// newPollClient returns the client id a subscription's long polls give
// (client=), so that the hub sees one member across polls.
func newPollClient() string {
	var b [8]byte
	rand.Read(b[:])
	return "go-" + hex.EncodeToString(b[:])
}
