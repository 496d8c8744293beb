package server

import (
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// The one history-page builder of the REST endpoint (rest.go) and the
// WebSocket history command (ws_command.go): both splice the hub's
// pre-encoded envelopes into msg.HistoryPage's members, and differ only in
// what goes around them (the REST body's braces, the reply's id and type)
// and in the WebSocket's byte bound.

// historyPage is the page of channel's history after after, as st stands;
// maxBytes bounds its encoding (0: none).
func historyPage(channel string, st hub.StreamState, after uint64, maxBytes int) *msg.HistoryPage {
	return &msg.HistoryPage{Channel: channel, Epoch: st.Epoch, After: after, Oldest: st.Oldest, Latest: st.Latest, MaxBytes: maxBytes}
}

// pubAt gives HistoryPage.AppendMembers the publications' encodings.
func pubAt(pubs []*hub.Publication) func(int) ([]byte, uint64) {
	return func(i int) ([]byte, uint64) { return pubs[i].JSON, pubs[i].Offset }
}
