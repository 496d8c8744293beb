package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/duplexhq/duplex/msg"
)

// WebSocket command types (DESIGN §4).
const (
	wsSubscribe   = "subscribe"
	wsUnsubscribe = "unsubscribe"
	wsPublish     = "publish"
	wsHistory     = "history"
	wsPing        = "ping"
	// Presence reads (ws_presence.go).
	wsPresence      = "presence"
	wsPresenceStats = "presence_stats"
)

// maxWSIDLen bounds the id a client may choose, so echoing it costs little.
const maxWSIDLen = 128

// wsCommand is one client → hub frame of /v1/ws. Pointer fields tell "absent"
// from zero.
type wsCommand struct {
	ID      json.RawMessage `json:"id"`
	Type    string          `json:"type"`
	Channel string          `json:"channel"`
	Epoch   *string         `json:"epoch"`
	Offset  *uint64         `json:"offset"`
	After   *uint64         `json:"after"`
	Limit   *int            `json:"limit"`
	Data    json.RawMessage `json:"data"`
	// JoinLeave and Info are a subscribe's presence options.
	JoinLeave bool            `json:"join_leave"`
	Info      json.RawMessage `json:"info"`
}

// errNotObject is returned by parseWSCommand for a frame that is not a JSON
// object: the connection is closed with 1003.
var errNotObject = errors.New("text frame is not a JSON object")

// parseWSCommand decodes one text frame. It returns errNotObject (wrapped)
// when b is not a JSON object, which ends the connection. For an object that
// is not a usable command it returns the command as far as it was decoded
// (ID only when it is valid) and a *msg.Error for the error reply. b must be
// valid UTF-8.
func parseWSCommand(b []byte) (wsCommand, error) {
	var cmd wsCommand
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return wsCommand{}, errNotObject
	}
	err := json.Unmarshal(t, &cmd)
	var se *json.SyntaxError
	if errors.As(err, &se) || (err != nil && !isTypeError(err)) {
		return wsCommand{}, errNotObject
	}
	// The id first, so that whatever else is wrong is reported against it.
	if !validWSID(cmd.ID) {
		missing := len(cmd.ID) == 0 || string(cmd.ID) == "null"
		cmd.ID = nil
		if missing {
			return cmd, msg.Errorf(msg.CodeBadRequest, "id is required: a number or a string of at most %d bytes", maxWSIDLen)
		}
		return cmd, msg.Errorf(msg.CodeBadRequest, "id must be a number or a string of at most %d bytes", maxWSIDLen)
	}
	if err != nil {
		var te *json.UnmarshalTypeError
		errors.As(err, &te)
		return cmd, msg.Errorf(msg.CodeBadRequest, "member %q has the wrong type (%s)", te.Field, te.Value)
	}
	switch cmd.Type {
	case "":
		return cmd, msg.Errorf(msg.CodeBadRequest, "type is required: subscribe, unsubscribe, publish, history, presence, presence_stats or ping")
	case wsSubscribe, wsUnsubscribe, wsPublish, wsHistory, wsPresence, wsPresenceStats:
		if cmd.Channel == "" {
			return cmd, msg.Errorf(msg.CodeBadRequest, "%s needs a channel", cmd.Type)
		}
	case wsPing:
	default:
		return cmd, msg.Errorf(msg.CodeBadRequest, "unknown type %q: expected subscribe, unsubscribe, publish, history, presence, presence_stats or ping", truncate(cmd.Type))
	}
	if cmd.Type == wsSubscribe && cmd.Epoch != nil {
		if *cmd.Epoch != "" && !msg.ValidEpoch(*cmd.Epoch) {
			return cmd, msg.Errorf(msg.CodeInvalidCursor, "epoch %q is not 1-16 of a-z 0-9", truncate(*cmd.Epoch))
		}
		if cmd.Offset == nil {
			return cmd, msg.Errorf(msg.CodeInvalidCursor, "epoch without offset: give both, or offset alone")
		}
	}
	if cmd.Type == wsPublish && len(cmd.Data) == 0 {
		return cmd, msg.Errorf(msg.CodeInvalidJSON, "publish needs data")
	}
	if cmd.Type == wsHistory && cmd.Limit != nil && (*cmd.Limit < 1 || *cmd.Limit > maxHistoryLimit) {
		return cmd, msg.Errorf(msg.CodeBadRequest, "limit must be from 1 to %d", maxHistoryLimit)
	}
	return cmd, nil
}

func isTypeError(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te)
}

// validWSID reports whether id is a JSON number or string short enough to
// echo.
func validWSID(id json.RawMessage) bool {
	if len(id) == 0 || len(id) > maxWSIDLen {
		return false
	}
	switch c := id[0]; {
	case c == '"':
		return true // json.Unmarshal checked it is a whole string
	case c == '-' || (c >= '0' && c <= '9'):
		return true
	}
	return false
}

// Replies. Each is one JSON object, built by appending: the id as the
// client wrote it, strings quoted with strconv (channel names and epochs
// never need escaping; messages go through json.Marshal).

func wsReplyStart(b []byte, id json.RawMessage, typ string) []byte {
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

func wsPong(id json.RawMessage) []byte {
	return append(wsReplyStart(nil, id, "pong"), '}')
}

func wsOK(id json.RawMessage) []byte {
	return append(wsReplyStart(nil, id, "ok"), '}')
}

// wsPosition is the ok reply to subscribe and publish: where the channel
// stands (subscribe) or where the message landed (publish, with time).
func wsPosition(id json.RawMessage, channel, epoch string, offset uint64, timeMs int64, withTime bool) []byte {
	b := wsReplyStart(make([]byte, 0, 96+len(id)+len(channel)), id, "ok")
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

// wsError is an error reply. A nil id leaves the id out (the command had
// none, or an unusable one).
func wsError(id json.RawMessage, err error) []byte {
	var me *msg.Error
	if !errors.As(err, &me) {
		me = msg.Errorf(msg.CodeInternal, "internal error")
	}
	b := wsReplyStart(make([]byte, 0, 64+len(id)+len(me.Message)), id, "error")
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
