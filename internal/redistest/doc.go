// Package redistest starts real redis-server processes for tests: on free
// 127.0.0.1 ports, in a temporary directory, without persistence unless a
// test asks for AOF, each killed by its PID when the test ends.
//
// Entry points: [Start] for one server, [StartCluster] for a three-master
// Redis Cluster. A [Server] can be killed and started again on the same
// port (with or without AOF), stopped for a while ([Server.StopFor]), and
// can drop its pub/sub clients ([Server.KillPubSub]) — the failures the
// Redis engine must survive.
//
// Readiness is never a sleep: a server is ready once it has printed
// "Ready to accept connections" and answered PING; a cluster once every
// node's CLUSTER INFO says cluster_state:ok.
//
// It needs redis-server and redis-cli on PATH (Debian: redis-server,
// redis-tools; ./scripts/test installs them). It does not mock Redis.
package redistest
