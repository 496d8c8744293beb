package server

import (
	"context"
	"net/http"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// subRequest is what a subscribing endpoint (sse, stream, poll) was asked:
// the channels, in request order, and the reader's cursor.
type subRequest struct {
	Channels []string
	Cursor   msg.Cursor
	// Presence holds join_leave=, info= and client= (presence.go);
	// Transport names the endpoint.
	Presence  presenceRequest
	Transport string
}

// parseSubRequest reads the repeated channel= parameters and cursor= of r.
// cursorText, when not empty, overrides cursor= (SSE's Last-Event-ID).
// A cursor entry for a channel not asked for is an error.
func (s *Server) parseSubRequest(r *http.Request, cursorText string) (subRequest, error) {
	q := r.URL.Query()
	chans := q["channel"]
	if len(chans) == 0 {
		return subRequest{}, msg.Errorf(msg.CodeBadRequest, "at least one channel= is required")
	}
	if max := s.hub.Config().MaxChannels; len(chans) > max {
		return subRequest{}, msg.Errorf(msg.CodeBadRequest, "%d channels asked, at most %d", len(chans), max)
	}
	seen := make(map[string]bool, len(chans))
	for _, ch := range chans {
		if !msg.ValidChannel(ch) {
			return subRequest{}, invalidChannel(ch)
		}
		if seen[ch] {
			return subRequest{}, msg.Errorf(msg.CodeInvalidChannel, "channel %q is asked twice", ch)
		}
		seen[ch] = true
	}
	if cursorText == "" {
		cursorText = q.Get("cursor")
	}
	cur, err := msg.ParseCursor(cursorText)
	if err != nil {
		return subRequest{}, msg.Errorf(msg.CodeInvalidCursor, "%v", err)
	}
	for ch := range cur {
		if !seen[ch] {
			return subRequest{}, msg.Errorf(msg.CodeInvalidCursor, "cursor names channel %q, which is not subscribed", ch)
		}
	}
	transport := transportOf(r.URL.Path)
	pr, err := s.parsePresenceQuery(q, transport == "poll")
	if err != nil {
		return subRequest{}, err
	}
	return subRequest{Channels: chans, Cursor: cur, Presence: pr, Transport: transport}, nil
}

// openSession starts a hub session subscribed to req's channels, each from
// its cursor entry or from now. It returns the session and the reader's
// cursor as it stands before the first queued item: advance it with
// hub.Item.Advance as items are written. The caller owns the session and
// must Release it.
func (s *Server) openSession(ctx context.Context, req subRequest) (*hub.Session, msg.Cursor, error) {
	for _, ch := range req.Channels {
		if err := s.authorize(ctx, ActionSubscribe, ch); err != nil {
			return nil, nil, err
		}
	}
	sess, err := s.hub.NewSession()
	if err != nil {
		return nil, nil, err
	}
	cur := make(msg.Cursor, len(req.Channels))
	if req.Presence.Client == "" {
		req.Presence.Client = newClientID() // one client for all the request's channels
	}
	for _, ch := range req.Channels {
		opts := hub.SubscribeOptions{}
		s.presenceOptions(ctx, &opts, req.Presence, req.Transport)
		if pos, ok := req.Cursor[ch]; ok {
			opts.From = &pos
		}
		res, err := sess.Subscribe(ctx, ch, opts)
		if err != nil {
			sess.Release()
			return nil, nil, err
		}
		if opts.From != nil {
			cur[ch] = *opts.From
		} else {
			cur[ch] = msg.Position{Epoch: res.Epoch, Offset: res.Offset}
		}
	}
	return sess, cur, nil
}
