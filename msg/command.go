package msg

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// This file holds the WebSocket protocol of /v1/ws (DESIGN §4): the
// commands a client sends, how the hub checks them, and the replies it
// answers with. Data frames (envelopes, gaps) are the same objects as on
// the other transports (envelope.go).

// CommandType is the "type" member of a command.
type CommandType string

// The commands.
const (
	CmdSubscribe   CommandType = "subscribe"
	CmdUnsubscribe CommandType = "unsubscribe"
	CmdPublish     CommandType = "publish"
	CmdHistory     CommandType = "history"
	CmdPing        CommandType = "ping"
	// Presence reads (presence.go): the members, or their counts.
	CmdPresence      CommandType = "presence"
	CmdPresenceStats CommandType = "presence_stats"
)

// The "type" members of replies.
const (
	ReplyOK    = "ok"
	ReplyPong  = "pong"
	ReplyError = "error"
)

// MaxCommandID bounds the id a client may choose, so echoing it costs little.
const MaxCommandID = 128

// History page sizes, for GET /v1/channels/{channel}/messages and the
// history command alike: limit defaults to DefaultHistoryLimit and may be
// from 1 to MaxHistoryLimit.
const (
	DefaultHistoryLimit = 100
	MaxHistoryLimit     = 1000
)

// Command is one client → hub frame of /v1/ws. Pointer members tell
// "absent" from zero. A client encodes it with json.Marshal.
type Command struct {
	ID      json.RawMessage `json:"id"`
	Type    CommandType     `json:"type"`
	Channel string          `json:"channel,omitempty"`
	Epoch   *string         `json:"epoch,omitempty"`
	Offset  *uint64         `json:"offset,omitempty"`
	After   *uint64         `json:"after,omitempty"`
	Limit   *int            `json:"limit,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	// JoinLeave and Info are a subscribe's presence options: joins and
	// leaves wanted, and the member's info (presence.go).
	JoinLeave bool            `json:"join_leave,omitempty"`
	Info      json.RawMessage `json:"info,omitempty"`
}

// ErrNotObject is returned (wrapped) by [ParseCommand] for a frame that is
// not a JSON object: the hub closes the connection with 1003 for it.
var ErrNotObject = errors.New("text frame is not a JSON object")

// ParseCommand decodes one text frame, which must be valid UTF-8. It
// returns [ErrNotObject] when b is not a JSON object. For an object that is
// not a usable command it returns the command as far as it was decoded (ID
// only when it is valid) and a *[Error] for the error reply.
func ParseCommand(b []byte) (Command, error) {
	var cmd Command
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return Command{}, ErrNotObject
	}
	err := json.Unmarshal(t, &cmd)
	var se *json.SyntaxError
	if errors.As(err, &se) || (err != nil && !isTypeError(err)) {
		return Command{}, ErrNotObject
	}
	// The id first, so that whatever else is wrong is reported against it.
	if !ValidCommandID(cmd.ID) {
		missing := len(cmd.ID) == 0 || string(cmd.ID) == "null"
		cmd.ID = nil
		if missing {
			return cmd, Errorf(CodeBadRequest, "id is required: a number or a string of at most %d bytes", MaxCommandID)
		}
		return cmd, Errorf(CodeBadRequest, "id must be a number or a string of at most %d bytes", MaxCommandID)
	}
	if err != nil {
		var te *json.UnmarshalTypeError
		errors.As(err, &te)
		return cmd, Errorf(CodeBadRequest, "member %q has the wrong type (%s)", te.Field, te.Value)
	}
	switch cmd.Type {
	case "":
		return cmd, Errorf(CodeBadRequest, "type is required: subscribe, unsubscribe, publish, history, presence, presence_stats or ping")
	case CmdSubscribe, CmdUnsubscribe, CmdPublish, CmdHistory, CmdPresence, CmdPresenceStats:
		if cmd.Channel == "" {
			return cmd, Errorf(CodeBadRequest, "%s needs a channel", cmd.Type)
		}
	case CmdPing:
	default:
		return cmd, Errorf(CodeBadRequest, "unknown type %q: expected subscribe, unsubscribe, publish, history, presence, presence_stats or ping", truncate(string(cmd.Type)))
	}
	if cmd.Type == CmdSubscribe && cmd.Epoch != nil {
		if *cmd.Epoch != "" && !ValidEpoch(*cmd.Epoch) {
			return cmd, Errorf(CodeInvalidCursor, "epoch %q is not 1-16 of a-z 0-9", truncate(*cmd.Epoch))
		}
		if cmd.Offset == nil {
			return cmd, Errorf(CodeInvalidCursor, "epoch without offset: give both, or offset alone")
		}
	}
	if cmd.Type == CmdPublish && len(cmd.Data) == 0 {
		return cmd, Errorf(CodeInvalidJSON, "publish needs data")
	}
	if cmd.Type == CmdHistory && cmd.Limit != nil && (*cmd.Limit < 1 || *cmd.Limit > MaxHistoryLimit) {
		return cmd, Errorf(CodeBadRequest, "limit must be from 1 to %d", MaxHistoryLimit)
	}
	return cmd, nil
}

func isTypeError(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te)
}

// ValidCommandID reports whether id is a JSON number or string short
// enough to echo. It trusts json.Unmarshal to have checked id is valid JSON.
func ValidCommandID(id json.RawMessage) bool {
	if len(id) == 0 || len(id) > MaxCommandID {
		return false
	}
	switch c := id[0]; {
	case c == '"':
		return true
	case c == '-' || (c >= '0' && c <= '9'):
		return true
	}
	return false
}

// Replies. Each is one JSON object, built by appending: the id as the
// client wrote it, strings quoted with strconv (channel names and epochs
// never need escaping; error texts go through json.Marshal).

// AppendReplyStart appends the opening of a reply of type typ to b:
// `{"id":<id>,"type":"<typ>"`, the id left out when nil. The caller
// appends further members (each starting with ',') and the closing '}'.
func AppendReplyStart(b []byte, id json.RawMessage, typ string) []byte {
	b = append(b, '{')
	if len(id) > 0 {
		b = append(b, `"id":`...)
		b = append(b, id...)
		b = append(b, ',')
	}
	b = append(b, `"type":"`...)
	b = append(b, typ...)
	return append(b, '"')
}

// PongReply is the reply to ping.
func PongReply(id json.RawMessage) []byte {
	return append(AppendReplyStart(nil, id, ReplyPong), '}')
}

// OKReply is the bare ok reply (unsubscribe).
func OKReply(id json.RawMessage) []byte {
	return append(AppendReplyStart(nil, id, ReplyOK), '}')
}

// PositionReply is the ok reply to subscribe and publish: where the channel
// stands (subscribe, withTime false) or where the message landed (publish,
// with its time).
func PositionReply(id json.RawMessage, channel, epoch string, offset uint64, timeMs int64, withTime bool) []byte {
	b := AppendReplyStart(make([]byte, 0, 96+len(id)+len(channel)), id, ReplyOK)
	b = append(b, `,"channel":"`...)
	b = append(b, channel...)
	b = append(b, `","epoch":"`...)
	b = append(b, epoch...)
	b = append(b, `","offset":`...)
	b = strconv.AppendUint(b, offset, 10)
	if withTime {
		b = append(b, `,"time":`...)
		b = strconv.AppendInt(b, timeMs, 10)
	}
	return append(b, '}')
}

// ErrorReply is the error reply for err: its code and message when it is
// a *[Error], else internal. A nil id leaves the id out (the command had
// none, or an unusable one).
func ErrorReply(id json.RawMessage, err error) []byte {
	var me *Error
	if !errors.As(err, &me) {
		me = Errorf(CodeInternal, "internal error")
	}
	b := AppendReplyStart(make([]byte, 0, 64+len(id)+len(me.Message)), id, ReplyError)
	b = append(b, `,"code":"`...)
	b = append(b, me.Code...)
	b = append(b, `","message":`...)
	text := me.Message
	if !utf8.ValidString(text) {
		text = strconv.QuoteToASCII(text)
	}
	m, _ := json.Marshal(text)
	b = append(b, m...)
	return append(b, '}')
}
