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
package server
