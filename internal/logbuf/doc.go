// Package logbuf is a buffered, asynchronous [io.Writer] for logs written
// on a hot path, such as the proxy's access log: a Write appends to memory
// and returns; one goroutine writes the gathered lines to the underlying
// writer on a timer, when enough has gathered, and at Close. So a busy
// server makes a few write(2) calls a second instead of one a line, and a
// line is at most [Config.Interval] late.
//
// Nothing is dropped: when the buffer is full a Write waits for the
// flusher (back-pressure), and Close writes out everything buffered before
// it returns. Writes after Close go straight to the underlying writer.
//
// It does not split or reorder writes, and it does not sync to disk.
package logbuf
