// Package msg holds the duplex wire vocabulary and its codecs, in one place:
// the message envelope, gap notices and their validation (envelope.go,
// frame.go), cursors and the cursor-advance rule (cursor.go), channel names,
// error codes and close codes, the WebSocket commands and replies
// (command.go), the history page (history.go), and the one decoder of the
// SSE and NDJSON streams (stream.go) that the Go client, the load
// generator and the hub's tests all read streams with.
//
// It is the one package that both the hub and every client share, so it
// imports nothing of duplex and nothing outside the standard library. It
// does no network I/O: the decoders read an io.Reader they are given, and
// the hub's transports write the bytes the appenders here build.
// testdata/ holds golden files of what the hub writes and the decoders
// read, and the fuzz seeds.
package msg
