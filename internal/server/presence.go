package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// Presence over HTTP: GET /v1/channels/{channel}/presence (members, or
// their counts with ?stats=1), and the query parameters of the subscribing
// endpoints that make a subscription a member with info= and ask for joins
// and leaves with join_leave=1 (docs/protocol.md, "Presence").

// maxInfoText bounds the info= text read, before the hub's own bound on
// the compact JSON, so that a huge parameter is refused without parsing.
const maxInfoText = 8 << 10

func (s *Server) handlePresence(w http.ResponseWriter, r *http.Request) {
	channel, ok := s.pathChannel(w, r, ActionSubscribe)
	if !ok {
		return
	}
	q := r.URL.Query()
	switch v := q.Get("stats"); v {
	case "1", "true":
		st, err := s.hub.PresenceStats(r.Context(), channel)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
		return
	case "", "0", "false":
	default:
		writeError(w, msg.Errorf(msg.CodeBadRequest, "stats=%q: expected 1 or 0", truncate(v)))
		return
	}
	ms, err := s.hub.Members(r.Context(), channel)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, msg.PresenceList{Channel: channel, Members: ms})
}

// presenceRequest is the presence part of a subscribing request.
type presenceRequest struct {
	JoinLeave bool
	Info      []byte // compact JSON, nil for none
	Client    string // poll's client=, else "" (a fresh id is made)
}

// parsePresenceQuery reads join_leave=, info= and client= (poll only).
func (s *Server) parsePresenceQuery(q url.Values, poll bool) (presenceRequest, error) {
	var p presenceRequest
	switch v := q.Get("join_leave"); v {
	case "1", "true":
		p.JoinLeave = true
	case "", "0", "false":
	default:
		return p, msg.Errorf(msg.CodeBadRequest, "join_leave=%q: expected 1 or 0", truncate(v))
	}
	if q.Has("info") {
		raw := q.Get("info")
		if len(raw) > maxInfoText {
			return p, msg.Errorf(msg.CodeInfoTooLarge, "info is over %d bytes", s.hub.Config().MaxPresenceInfo)
		}
		info, err := s.hub.ValidateInfo([]byte(raw))
		if err != nil {
			return p, err
		}
		p.Info = info
	}
	if q.Has("client") {
		if !poll {
			return p, msg.Errorf(msg.CodeBadRequest, "client= is for /v1/poll only: other transports are one connection, one client")
		}
		c := q.Get("client")
		if !msg.ValidClientID(c) {
			return p, msg.Errorf(msg.CodeBadRequest, "client=%q: 1-64 bytes of A-Z a-z 0-9 _ . -", truncate(c))
		}
		p.Client = c
	}
	return p, nil
}

// transportOf names the transport of a subscribing request by its path.
func transportOf(path string) string {
	switch path {
	case "/v1/sse":
		return "sse"
	case "/v1/stream":
		return "stream"
	case "/v1/poll":
		return "poll"
	}
	return strings.TrimPrefix(path, "/v1/")
}

// member is the presence member a subscription of ctx's bearer makes.
func member(ctx context.Context, client, transport string, info []byte) *msg.Member {
	m := &msg.Member{Client: client, Transport: transport, Info: info}
	if c, _ := ctx.Value(claimsKey{}).(*Claims); c != nil {
		m.User = c.Subject
	}
	return m
}

// presenceOptions fills the presence part of a subscription's options.
func (s *Server) presenceOptions(ctx context.Context, opts *hub.SubscribeOptions, p presenceRequest, transport string) {
	client, linger := p.Client, time.Duration(0)
	if transport == "poll" {
		linger = s.cfg.PresencePollLinger
	}
	if client == "" {
		client = newClientID()
	}
	opts.Member = member(ctx, client, transport, p.Info)
	opts.Linger = linger
	opts.JoinLeave = p.JoinLeave
}

// newClientID returns 16 random hex digits.
func newClientID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
