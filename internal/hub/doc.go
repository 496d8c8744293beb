// Package hub is the channel model of duplex: publications, per-channel
// offsets and epochs (kept by an [Engine]), and sessions that subscribe to
// channels and receive their messages through one bounded queue.
//
// Entry points: [New] builds a [Hub] over an Engine; [Hub.Publish],
// [Hub.History] and [Hub.Info] serve request/response traffic;
// [Hub.NewSession] starts a session that a transport (WebSocket, SSE, NDJSON
// stream, long poll) owns and drains with [Session.Next].
//
// The hub knows nothing of net/http and of any engine: engines implement the
// Engine interface declared here, and transports live in internal/server.
//
// Delivery guarantees: each session receives each publication of a channel
// once, in offset order, starting at "now" or right after a cursor position,
// with replay and live traffic joined without loss or duplicate. When the
// messages after a cursor are gone, the session receives a gap notice
// instead of a silent skip. Publishing never waits for a subscriber: a
// session whose queue overflows (in count or bytes) is closed with
// [msg.CloseSlow] and resumes later from its cursor.
//
// Lock order: Session.subMu, then engine stream locks, then Hub.mu, then
// channel.mu, then Session.mu, then Hub.bgMu (a leaf: a session starts its
// pager with its lock held). The engine calls the hub's Handler with its
// stream lock held, so the hub never calls the engine while holding Hub.mu,
// a channel.mu or a Session.mu: history pages (replay.go) are read with no
// lock held, by the session's pager goroutine. The hub-wide bound on queued bytes
// (bound.go) adds no mutex: it counts with atomics, and its slow path takes
// Hub.mu for reading, lets go, then each Session.mu alone.
package hub
