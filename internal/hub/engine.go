package hub

import (
	"context"
	"encoding/json"

	"github.com/duplexhq/duplex/msg"
)

// Publication is one stored message of a channel.
type Publication struct {
	msg.Envelope
	// JSON is Envelope encoded once by the engine; transports write it as
	// it is, whatever the number of subscribers. Never modify it.
	JSON []byte
}

// NewPublication returns a Publication with its JSON encoding made.
func NewPublication(channel, epoch string, offset uint64, timeMs int64, data json.RawMessage) *Publication {
	p := &Publication{Envelope: msg.Envelope{
		Type: msg.TypeMessage, Channel: channel, Epoch: epoch,
		Offset: offset, Time: timeMs, Data: data,
	}}
	// The fixed members take 68 bytes, the epoch up to 16, offset and time
	// up to 20 and 13 digits: 128 bytes beside channel and data are always
	// enough, so the encoding is one allocation, never grown.
	p.JSON = p.Envelope.AppendJSON(make([]byte, 0, 128+len(channel)+len(data)))
	return p
}

// StreamState is where a channel's history stands.
type StreamState struct {
	Epoch  string
	Oldest uint64 // oldest retained offset; Latest+1 when nothing is retained
	Latest uint64 // newest offset; 0 before the first publication
}

// HistoryQuery selects publications of one channel.
type HistoryQuery struct {
	After uint64 // return offsets greater than After
	// Limit is the most publications to return. Zero returns none (only the
	// state); a negative Limit returns every retained one.
	Limit int
}

// Handler receives publications from an engine. It is called in offset order
// per channel and must not block nor call back into the engine.
type Handler func(p *Publication)

// Engine stores channels' offsets, epochs and history, and brings every
// publication of a subscribed channel to the hub's Handler. Implementations
// are safe for concurrent use. Data the engine hands back (History, the
// Handler) must pass msg.CompactData: an engine whose store lives outside
// the process, where anything may have written it, runs what it reads
// through that check and treats a failure as a damaged store.
type Engine interface {
	// Start makes the engine deliver to h until Close. ctx bounds the start
	// itself (connecting, for example), not the engine's life.
	Start(ctx context.Context, h Handler) error

	// Publish assigns data the next offset of channel, stores it and, if
	// the channel is subscribed, delivers it to the Handler. data is valid,
	// compact JSON that passed msg.CompactData.
	Publish(ctx context.Context, channel string, data json.RawMessage) (*Publication, error)

	// History returns the channel's state and the publications q selects,
	// oldest first. Reading a channel that was never published creates it.
	History(ctx context.Context, channel string, q HistoryQuery) (StreamState, []*Publication, error)

	// Subscribe and Unsubscribe are counted: while a channel has more
	// Subscribe than Unsubscribe calls, its publications reach the Handler.
	// Subscribe returns once delivery is in place, so a History call made
	// after it returns misses nothing delivered before.
	Subscribe(ctx context.Context, channel string) error
	Unsubscribe(ctx context.Context, channel string) error

	// Close stops delivery and releases the engine's resources.
	Close(ctx context.Context) error
}
