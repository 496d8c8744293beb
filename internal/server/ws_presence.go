package server

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// presenceOptions fills a WebSocket subscribe's presence part: the
// connection is one client, a member of each presence channel it
// subscribes, with the command's info; join_leave asks for the events.
func (wc *wsConn) presenceOptions(ctx context.Context, opts *hub.SubscribeOptions, cmd msg.Command) error {
	var info json.RawMessage
	if len(cmd.Info) > 0 {
		var err error
		if info, err = wc.s.hub.ValidateInfo(cmd.Info); err != nil {
			return err
		}
	}
	opts.Member = member(ctx, wc.client, "ws", info)
	opts.JoinLeave = cmd.JoinLeave
	return nil
}

// presence serves the presence and presence_stats commands: the reply is
// {"id","type":"ok","channel","members":[...]} or
// {"id","type":"ok","channel","clients","users"}.
func (wc *wsConn) presence(ctx context.Context, cmd msg.Command) ([]byte, error) {
	if !msg.ValidChannel(cmd.Channel) {
		return nil, invalidChannel(cmd.Channel)
	}
	if err := wc.s.authorize(ctx, ActionSubscribe, cmd.Channel); err != nil {
		return nil, err
	}
	b := msg.AppendReplyStart(make([]byte, 0, 128), cmd.ID, msg.ReplyOK)
	b = append(b, `,"channel":"`...)
	b = append(b, cmd.Channel...)
	if cmd.Type == msg.CmdPresenceStats {
		st, err := wc.s.hub.PresenceStats(ctx, cmd.Channel)
		if err != nil {
			return nil, err
		}
		b = append(b, `","clients":`...)
		b = strconv.AppendInt(b, int64(st.Clients), 10)
		b = append(b, `,"users":`...)
		b = strconv.AppendInt(b, int64(st.Users), 10)
		return append(b, '}'), nil
	}
	ms, err := wc.s.hub.Members(ctx, cmd.Channel)
	if err != nil {
		return nil, err
	}
	list, err := json.Marshal(ms)
	if err != nil {
		return nil, err
	}
	b = append(b, `","members":`...)
	b = append(b, list...)
	return append(b, '}'), nil
}
