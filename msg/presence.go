package msg

import (
	"encoding/json"
	"strconv"
)

// Presence frame types: a member joined or left a channel. They reach only
// subscriptions that asked for them (join_leave), carry no offset and never
// move a cursor.
const (
	TypeJoin  = "join"
	TypeLeave = "leave"
)

// Presence error codes.
const (
	// CodePresenceOff refuses presence (reading it, join_leave, info) on a
	// channel that no --presence glob matches. 404: there is no presence
	// resource there.
	CodePresenceOff Code = "presence_disabled"
	// CodeInfoTooLarge refuses a member's info over its bound. 413.
	CodeInfoTooLarge Code = "info_too_large"
)

// Member is one session present in a channel.
type Member struct {
	// Client identifies the connection (a long-poll reader names its own
	// with client=), unique per channel.
	Client string `json:"client"`
	// User is the sub claim of the member's token; empty without one.
	User string `json:"user"`
	// Transport is ws, sse, stream or poll.
	Transport string `json:"transport"`
	// Joined is when the member joined, Unix milliseconds.
	Joined int64 `json:"joined"`
	// Info is the small JSON value the client gave at subscribe; null
	// when it gave none.
	Info json.RawMessage `json:"info"`
}

// PresenceList is the answer to GET /v1/channels/{channel}/presence and to
// the WebSocket presence command (with id and type around it).
type PresenceList struct {
	Channel string   `json:"channel"`
	Members []Member `json:"members"`
}

// PresenceStats is the answer to ?stats=1 and presence_stats: how many
// clients are present, and how many distinct non-empty users they are.
type PresenceStats struct {
	Channel string `json:"channel"`
	Clients int    `json:"clients"`
	Users   int    `json:"users"`
}

// PresenceEvent is a join or leave, as every transport delivers it.
type PresenceEvent struct {
	Type    string          `json:"type"` // TypeJoin or TypeLeave
	Channel string          `json:"channel"`
	Client  string          `json:"client"`
	User    string          `json:"user"`
	Info    json.RawMessage `json:"info"`
}

// AppendJSON appends the JSON encoding of e to b. Info must be valid,
// compact JSON or empty (written as null); the strings are quoted.
func (e *PresenceEvent) AppendJSON(b []byte) []byte {
	b = append(b, `{"type":"`...)
	b = append(b, e.Type...)
	b = append(b, `","channel":"`...)
	b = append(b, e.Channel...)
	b = append(b, `","client":`...)
	b = appendQuoted(b, e.Client)
	b = append(b, `,"user":`...)
	b = appendQuoted(b, e.User)
	b = append(b, `,"info":`...)
	if len(e.Info) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Info...)
	}
	return append(b, '}')
}

// appendQuoted appends s as a JSON string.
func appendQuoted(b []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			plain = false
			break
		}
	}
	if plain {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, err := json.Marshal(s)
	if err != nil {
		return strconv.AppendQuoteToASCII(b, s)
	}
	return append(b, q...)
}

// ValidClientID reports whether id may name a client: 1-64 bytes of
// A-Z a-z 0-9 _ . -.
func ValidClientID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
