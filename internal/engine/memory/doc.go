// Package memory is the embedded default engine of duplex: per-channel
// offsets, epochs and history rings held in this process's memory.
//
// Entry point: [New]. The engine implements hub.Engine.
//
// Each channel gets a fresh random epoch when it is created, so a restart
// of the process, or a channel freed when idle and created again, never
// reuses an (epoch, offset) pair. History is bounded by count
// (Config.HistorySize) and age (Config.HistoryTTL). A channel with no
// subscriber, no retained history and no use for HistoryTTL is freed.
//
// It does not share anything between processes: that is the Redis engine's
// job.
package memory
