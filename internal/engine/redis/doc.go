// Package redis is the Redis engine of duplex: channels' offsets, epochs
// and history live in Redis, so any number of hubs on one Redis (or one
// Redis Cluster) share channels.
//
// Entry points: [New] with a [Config] whose URL is [ParseURL]'s:
// redis://host:port/db, rediss://… (TLS), or redis+cluster://h1:p1,h2:p2
// (rediss+cluster:// with TLS) for a Redis Cluster.
//
// Publish is one Lua script: it assigns the next offset, appends to a
// capped history, keeps or creates the epoch and publishes the envelope for
// fan-out, atomically, so two hubs never share an offset and offsets have
// no holes. A channel's keys share the hash slot of its name ({channel}),
// so the script runs on one node of a Cluster, where fan-out is sharded
// pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7), which stays on that node instead
// of being broadcast to every one.
//
// History is a Redis stream whose entry IDs are the offsets (offset-0):
// reads by offset are range reads on the IDs, the entries carry their own
// offsets (no index arithmetic that a concurrent trim could skew), and
// XADD MAXLEN caps it by count. Entries also carry the publish time, which
// the script uses to trim by age.
//
// Each engine holds one Redis subscription per subscribed channel (the
// hub's Subscribe/Unsubscribe are counted), over one pub/sub connection
// (on a Cluster, one per hash slot in use), and decodes each publication
// once. When that connection drops it reconnects with backoff, subscribes
// again, and tells the hub through hub.Handlers.Lost which channels may
// have missed publications.
//
// It does not do Sentinel, nor keep presence.
package redis
