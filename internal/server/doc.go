// Package server serves a hub over HTTP: the request/response API, the
// streaming transports (WebSocket, Server-Sent Events, NDJSON streaming,
// long polling), the echo endpoint, health, metrics and the web client.
//
// Entry points: [New] builds a [Server] from a [Config]; [Server.Serve]
// serves a listener; [Server.Shutdown] stops the HTTP server and the hub
// together, so streaming sessions end with a shutdown notice instead of a
// cut connection.
//
// Every HTTP error goes through one function, writeError, which maps
// *msg.Error codes to statuses and writes {"error":{"code","message"}}.
// The package reads no flags or environment: internal/cli does that.
// Every subscribing transport opens and closes its hub session through
// one sequence (session.go). The wire vocabulary (commands, replies,
// frames, history pages) is package msg's.
//
// # Lock order
//
// Where two of the package's mutexes are held at once, the outer one is
// taken first, in this order (the hub's own order, internal/hub/doc.go,
// comes before all of these):
//
//  1. hub Session.mu: the session's notify hook (wsConn.notify) runs with
//     it held and schedules the connection with the writers, so
//  2. wsWriters.mu (ws_write.go) nests inside it: hub session → writers.
//     The writers never call the hub (TryNext, Written) or write a socket
//     with it held.
//  3. wsState.mu (ws.go) is held while add starts the sweeper, the
//     writers and the poller, so Server.mu (beginStream) and
//     wsPoller.mu (poller.add) nest inside it. remove stops them under
//     it without taking their locks.
//  4. wsPoller.mu (ws_poll_linux.go) is held while starting a reader
//     goroutine; it takes nothing inside.
//  5. wsNetConn.mu (ws_conn.go), capListener.mu (listener.go) and
//     Server.mu are leaves: held around one socket write, one map
//     update, one flag.
//
// No lock of this package is held while calling into the hub, except
// where the hub calls us (the notify hook, under Session.mu).
package server
