package server

import (
	"context"
	"errors"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// The commands of /v1/ws (DESIGN §4; their wire form is msg's,
// msg/command.go): serve runs one text message, and its reply goes through
// the session, so it keeps its order with the messages. Publishes are
// limited per connection by a token bucket (Config.PublishRate).

// wsHistoryBytes bounds one history reply; a page stops early (and says so
// with next) rather than exceed it. At least one message is always sent.
const wsHistoryBytes = 1 << 20

// serve runs one command. It returns a close code only when the
// connection must end.
func (wc *wsConn) serve(b []byte) (msg.CloseCode, string) {
	cmd, err := msg.ParseCommand(b)
	if errors.Is(err, msg.ErrNotObject) {
		return msg.CloseUnsupported, "text frame is not a JSON object"
	}
	var reply []byte
	if err == nil {
		reply, err = wc.run1(wc.ctx, cmd)
	}
	if err != nil {
		reply = msg.ErrorReply(cmd.ID, err)
	}
	if reply != nil {
		wc.repliesIn.Add(1)
	}
	if reply != nil && wc.sess.Send(reply) != nil {
		// The session closed (its first code stands): stop reading.
		return msg.CloseNormal, ""
	}
	return 0, ""
}

// run1 serves a decoded command and returns its reply (nil when the reply
// was queued already) or an error for the error reply.
func (wc *wsConn) run1(ctx context.Context, cmd msg.Command) ([]byte, error) {
	h := wc.s.hub
	switch cmd.Type {
	case msg.CmdPing:
		return msg.PongReply(cmd.ID), nil
	case msg.CmdSubscribe:
		if err := wc.s.authorize(ctx, ActionSubscribe, cmd.Channel); err != nil && msg.ValidChannel(cmd.Channel) {
			return nil, err
		}
		opts := hub.SubscribeOptions{Ack: func(r hub.SubscribeResult) []byte {
			wc.repliesIn.Add(1) // queued next, ahead of the replay
			return msg.PositionReply(cmd.ID, r.Channel, r.Epoch, r.Offset, 0, false)
		}}
		if cmd.Offset != nil {
			pos := msg.Position{Offset: *cmd.Offset}
			if cmd.Epoch != nil {
				pos.Epoch = *cmd.Epoch
			}
			opts.From = &pos
		}
		if err := wc.presenceOptions(ctx, &opts, cmd); err != nil {
			return nil, err
		}
		_, err := wc.sess.Subscribe(ctx, cmd.Channel, opts)
		return nil, err
	case msg.CmdUnsubscribe:
		if !msg.ValidChannel(cmd.Channel) {
			return nil, invalidChannel(cmd.Channel)
		}
		if err := wc.sess.Unsubscribe(ctx, cmd.Channel); err != nil {
			return nil, err
		}
		return msg.OKReply(cmd.ID), nil
	case msg.CmdPublish:
		if !msg.ValidChannel(cmd.Channel) {
			return nil, invalidChannel(cmd.Channel)
		}
		if err := wc.s.authorize(ctx, ActionPublish, cmd.Channel); err != nil {
			return nil, err
		}
		if !wc.bucket.allow(time.Now()) {
			return nil, msg.Errorf(msg.CodeRateLimited, "more than %g publishes per second on this connection", wc.bucket.rate)
		}
		p, err := h.Publish(ctx, cmd.Channel, cmd.Data)
		if err != nil {
			return nil, err
		}
		return msg.PositionReply(cmd.ID, p.Channel, p.Epoch, p.Offset, p.Time, true), nil
	case msg.CmdHistory:
		return wc.history(ctx, cmd)
	case msg.CmdPresence, msg.CmdPresenceStats:
		return wc.presence(ctx, cmd)
	}
	return nil, msg.Errorf(msg.CodeBadRequest, "unknown type %q", truncate(string(cmd.Type)))
}

func (wc *wsConn) history(ctx context.Context, cmd msg.Command) ([]byte, error) {
	var after uint64
	if cmd.After != nil {
		after = *cmd.After
	}
	limit := msg.DefaultHistoryLimit
	if cmd.Limit != nil {
		limit = *cmd.Limit
	}
	if !msg.ValidChannel(cmd.Channel) {
		return nil, invalidChannel(cmd.Channel)
	}
	if err := wc.s.authorize(ctx, ActionSubscribe, cmd.Channel); err != nil {
		return nil, err
	}
	st, pubs, err := wc.s.hub.History(ctx, cmd.Channel, after, limit)
	if err != nil {
		return nil, err
	}
	b := append(msg.AppendReplyStart(make([]byte, 0, 256), cmd.ID, msg.ReplyOK), ',')
	b, _ = historyPage(cmd.Channel, st, after, wsHistoryBytes).AppendMembers(b, len(pubs), pubAt(pubs))
	return append(b, '}'), nil
}

// tokenBucket limits a rate with bursts; the zero value allows everything.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func (b *tokenBucket) allow(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
