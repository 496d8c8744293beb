package hub

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// Publication is one stored message of a channel.
type Publication struct {
	msg.Envelope
	// JSON is Envelope encoded once by the engine; transports write it as
	// it is, whatever the number of subscribers. Never modify it.
	JSON []byte

	// compressed caches Compressed's result for every transport.
	compressed struct {
		once sync.Once
		b    []byte
	}
}

// Compressed returns compress(p.JSON), called once per publication however
// many connections ask (and from however many goroutines): the WebSocket
// transport shares one permessage-deflate frame across subscribers as it
// shares JSON. A nil result (not worth compressing) is kept as well. Every
// caller must pass the same function.
func (p *Publication) Compressed(compress func([]byte) []byte) []byte {
	p.compressed.once.Do(func() { p.compressed.b = compress(p.JSON) })
	return p.compressed.b
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

// Handlers are the hub's callbacks, given to an engine by Start. None may
// block nor call back into the engine.
type Handlers struct {
	// Deliver receives the publications of subscribed channels, in offset
	// order per channel. It may be called from any goroutine, but never
	// concurrently for one channel.
	Deliver func(p *Publication)
	// Lost says that publications of channel may have been missed: the
	// engine's delivery of it was interrupted (a pub/sub connection dropped)
	// and is in place again. It is called after delivery is back, so a
	// History read made after Lost returns, together with what Deliver
	// brings from then on, misses nothing. An engine that cannot lose
	// deliveries (memory) never calls it.
	Lost func(channel string)
	// Down says that the engine cannot deliver (its pub/sub connection
	// has been down longer than a short grace, and is being retried);
	// Up says that it can again. They alternate, Down first; an engine
	// that cannot go down (memory) calls neither. The hub closes its
	// sessions on Down, with a code that tells clients to come back with
	// their cursors, and refuses new subscriptions until Up: a
	// subscriber is told, instead of waiting on a channel that may not
	// deliver for a long time, and a client behind a load balancer may
	// find a hub whose engine works.
	Down func(err error)
	Up   func()
	// Presence receives the joins and leaves of subscribed channels
	// (PresenceEngine), in order with their publications: the same
	// rules as Deliver, never concurrently with it for one channel.
	Presence func(ev *PresenceEvent)
}

// Engine stores channels' offsets, epochs and history, and brings every
// publication of a subscribed channel to the hub's Handler. Implementations
// are safe for concurrent use. Data the engine hands back (History, the
// Handler) must pass msg.CompactData: an engine whose store lives outside
// the process, where anything may have written it, runs what it reads
// through that check and treats a failure as a damaged store.
type Engine interface {
	// Start makes the engine call h until Close. ctx bounds the start
	// itself (connecting, for example), not the engine's life. Nil funcs
	// in h are not called.
	Start(ctx context.Context, h Handlers) error

	// Publish assigns data the next offset of channel, stores it and, if
	// the channel is subscribed, delivers it to Handlers.Deliver (maybe
	// after Publish returns). data is valid, compact JSON that passed
	// msg.CompactData. Concurrent publishers, on this engine or on others
	// sharing its store, never get the same offset and leave no hole.
	Publish(ctx context.Context, channel string, data json.RawMessage) (*Publication, error)

	// History returns the channel's state and the publications q selects,
	// oldest first. Reading a channel that was never published, or that
	// the store lost, gives Latest 0, Oldest 1 and either a fresh epoch or
	// the empty one (which a cursor's epoch never contradicts); it creates
	// no state that outlives the engine's idle sweep (Redis: no key).
	// An epoch, once a publication carries it, stays while the store holds
	// the channel, and is never used again once the store lost it.
	History(ctx context.Context, channel string, q HistoryQuery) (StreamState, []*Publication, error)

	// Subscribe and Unsubscribe are counted: while a channel has more
	// Subscribe than Unsubscribe calls, its publications reach Deliver.
	// Subscribe returns once delivery is in place, so a History call made
	// after it returns misses nothing delivered before.
	Subscribe(ctx context.Context, channel string) error
	Unsubscribe(ctx context.Context, channel string) error

	// Close stops delivery and releases the engine's resources.
	Close(ctx context.Context) error
}

// HistoryLimits fills in the history bounds every engine shares, as its
// Config documents them: a zero size means 1000 publications per channel
// and a negative one keeps none (0); a zero or negative TTL means 10
// minutes.
func HistoryLimits(size int, ttl time.Duration) (int, time.Duration) {
	switch {
	case size == 0:
		size = 1000
	case size < 0:
		size = 0
	}
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	return size, ttl
}
