// Package msg holds the duplex wire types and their codecs: the message
// envelope, gap notices, cursors, channel names, error codes and close codes.
//
// It is the one package that both the hub and every client share, so it
// imports nothing of duplex and nothing outside the standard library. It does
// not do I/O: framing for a transport (SSE, NDJSON, WebSocket) lives with the
// transport, and only the pieces two sides must agree on byte for byte are
// here.
package msg
