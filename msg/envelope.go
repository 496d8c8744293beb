package msg

import (
	"encoding/json"
	"strconv"
)

// Frame types, the "type" member of every object the hub sends.
const (
	TypeMessage   = "message"
	TypeGap       = "gap"
	TypeHeartbeat = "heartbeat"
)

// Envelope is one publication as every transport delivers it.
type Envelope struct {
	Type    string          `json:"type"` // always "message"
	Channel string          `json:"channel"`
	Epoch   string          `json:"epoch"`
	Offset  uint64          `json:"offset"`
	Time    int64           `json:"time"` // publish time, Unix milliseconds
	Data    json.RawMessage `json:"data"`
}

// AppendJSON appends the JSON encoding of e to b. It equals json.Marshal for
// any envelope whose Channel and Epoch are valid and whose Data is valid,
// compact JSON, and it does not allocate beyond growing b: the hub encodes each
// publication once with it, whatever the number of subscribers.
func (e *Envelope) AppendJSON(b []byte) []byte {
	b = append(b, `{"type":"message","channel":"`...)
	b = append(b, e.Channel...) // channel bytes never need escaping
	b = append(b, `","epoch":"`...)
	b = append(b, e.Epoch...)
	b = append(b, `","offset":`...)
	b = strconv.AppendUint(b, e.Offset, 10)
	b = append(b, `,"time":`...)
	b = strconv.AppendInt(b, e.Time, 10)
	b = append(b, `,"data":`...)
	if len(e.Data) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Data...)
	}
	return append(b, '}')
}

// Gap tells a reader that the messages of Channel between its cursor and
// offset Next of Epoch are gone; the next message on Channel has offset Next.
type Gap struct {
	Type    string `json:"type"` // always "gap"
	Channel string `json:"channel"`
	Epoch   string `json:"epoch"`
	Next    uint64 `json:"next"`
}

// AppendJSON appends the JSON encoding of g to b.
func (g *Gap) AppendJSON(b []byte) []byte {
	b = append(b, `{"type":"gap","channel":"`...)
	b = append(b, g.Channel...)
	b = append(b, `","epoch":"`...)
	b = append(b, g.Epoch...)
	b = append(b, `","next":`...)
	b = strconv.AppendUint(b, g.Next, 10)
	return append(b, '}')
}

// Heartbeat is the keep-alive line of the NDJSON stream; it carries the
// reader's cursor so a client can resume from it.
type Heartbeat struct {
	Type   string `json:"type"` // always "heartbeat"
	Cursor string `json:"cursor"`
}

// Published is the reply to a publish: where the message landed.
type Published struct {
	Channel string `json:"channel"`
	Epoch   string `json:"epoch"`
	Offset  uint64 `json:"offset"`
	Time    int64  `json:"time"`
}

// History is one page of a channel's history, as GET
// /v1/channels/{channel}/messages and the WebSocket history command return it.
type History struct {
	Channel  string     `json:"channel"`
	Epoch    string     `json:"epoch"`
	Messages []Envelope `json:"messages"`
	// Next is the offset to pass as after= for the following page: the
	// offset of the last message in Messages, or the request's after when
	// Messages is empty.
	Next   uint64 `json:"next"`
	Oldest uint64 `json:"oldest"` // oldest retained offset; Latest+1 when none is retained
	Latest uint64 `json:"latest"` // offset of the newest publication, 0 when none
}

// ChannelInfo is the state of one channel.
type ChannelInfo struct {
	Channel     string `json:"channel"`
	Epoch       string `json:"epoch"`
	Oldest      uint64 `json:"oldest"`
	Latest      uint64 `json:"latest"`
	Subscribers int    `json:"subscribers"`
}

// PollResponse is the answer to GET /v1/poll.
type PollResponse struct {
	Messages []Envelope `json:"messages"`
	Gaps     []Gap      `json:"gaps"`
	Cursor   string     `json:"cursor"`
}
