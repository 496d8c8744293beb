// Package enginetest is the conformance suite every hub.Engine passes: one
// table of tests ([Run]) that talks to engines only through hub.Engine, so
// the memory engine and the Redis engine are held to the same contract.
//
// A [Store] is what engines share (one memory engine, one Redis, one Redis
// Cluster); the suite makes several engine instances on one store to check
// what a store must guarantee across processes: offsets without holes under
// concurrent publishers, one epoch, delivery to every instance.
//
// Delivery is awaited, never assumed: an engine may call Deliver after
// Publish returns. The suite does not sleep to let things happen; it waits
// for what it expects, with a generous deadline that only a broken engine
// reaches.
package enginetest
