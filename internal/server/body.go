package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// Request bodies get a read deadline of their own.
//
// net/http bounds a request's headers (ReadHeaderTimeout) but, with
// ReadTimeout zero, leaves no deadline on the connection while a handler
// reads the body, nor while it discards a body the handler left unread
// (up to 256 KiB, before the response goes out). A client that declares a
// body and sends one byte of it holds its connection, and a slot of
// MaxConnections, forever. ReadTimeout is no cure: its deadline stays on
// the connection and fires in the background read net/http runs during
// SSE, NDJSON and long-poll responses, cancelling their contexts.
//
// So [Server.boundBody] sets a deadline itself, through the connection
// behind the ResponseWriter, when a request has a body (ContentLength not
// 0). In the manner of Apache's mod_reqtimeout the deadline is
//
//	start + BodyGrace + received/BodyMinRate, capped at start + BodyTimeout
//
// where start is the end of the headers (the handler's start) and received
// the body bytes read so far, recomputed after each read that returns
// data: a body that keeps arriving at BodyMinRate or faster is only cut by
// BodyTimeout, a dribbling one once it falls behind. When the body ends
// (EOF) the deadline is cleared, so that net/http's background read, which
// starts then and lasts as long as the response, never meets it (net/http
// 1.26 also clears it as that read starts; this does not rely on it). A read
// past the deadline fails with a request_timeout error; the handler
// answers 408 with it and the connection is closed.
//
// The publish handler (POST) reads its body through the deadline. Every
// other method is answered without a body, so boundBody reads such a body
// to its end, and drops it, before the handler runs: a GET's dangling body
// is cut at the deadline with 408 instead of blocking the response in
// net/http's discard, and streaming responses and WebSocket upgrades begin
// with the deadline already cleared. A handler that answers a POST without
// reading (an error) leaves the deadline in place for net/http's discard.

// boundBody puts r's body under the body deadline. It returns the request
// to serve, or nil when it has answered r itself (a body that was too slow
// or too large on a method that takes none).
func (s *Server) boundBody(w http.ResponseWriter, r *http.Request) *http.Request {
	if r.ContentLength == 0 || (s.cfg.BodyTimeout < 0 && s.cfg.BodyMinRate < 0) {
		return r
	}
	b := &timedBody{body: r.Body, w: w, start: time.Now(), cfg: &s.cfg}
	if err := b.setDeadline(b.deadline()); err != nil {
		// Not a connection net/http serves (a test's ResponseRecorder):
		// there is no socket to bound.
		return r
	}
	r.Body = b
	if r.Method == http.MethodPost {
		return r
	}
	_, err := io.CopyN(io.Discard, b, s.cfg.MaxBody+1)
	switch {
	case err == io.EOF:
		return r
	case err == nil:
		err = msg.Errorf(msg.CodeTooLarge, "a %s request takes no body, and this one is over %d bytes", r.Method, s.cfg.MaxBody)
	case msg.CodeOf(err) == msg.CodeInternal:
		err = msg.Errorf(msg.CodeBadRequest, "read body: %v", err)
	}
	w.Header().Set("Connection", "close")
	writeError(w, err)
	return nil
}

// timedBody is a request body read under the body deadline; see the top
// of this file. Like the body it wraps, it is read by one goroutine.
type timedBody struct {
	body  io.ReadCloser
	w     http.ResponseWriter // where the connection's deadline is set
	cfg   *Config
	start time.Time
	n     int64 // bytes read so far
	ended bool  // EOF seen and the deadline cleared
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.n += int64(n)
	switch {
	case err == nil:
		if n > 0 && b.cfg.BodyMinRate > 0 {
			b.setDeadline(b.deadline())
		}
	case err == io.EOF:
		if !b.ended {
			b.ended = true
			b.setDeadline(time.Time{})
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = b.timeoutError()
	}
	return n, err
}

func (b *timedBody) Close() error { return b.body.Close() }

// deadline is the read deadline for the bytes read so far.
func (b *timedBody) deadline() time.Time {
	var d time.Time
	if b.cfg.BodyTimeout > 0 {
		d = b.start.Add(b.cfg.BodyTimeout)
	}
	if rate := b.cfg.BodyMinRate; rate > 0 {
		allowed := b.cfg.BodyGrace + time.Duration(float64(b.n)/float64(rate)*float64(time.Second))
		if allowed < 0 { // overflow: no body is that long
			return d
		}
		if r := b.start.Add(allowed); d.IsZero() || r.Before(d) {
			d = r
		}
	}
	return d
}

func (b *timedBody) setDeadline(t time.Time) error {
	return http.NewResponseController(b.w).SetReadDeadline(t)
}

func (b *timedBody) timeoutError() error {
	var bounds []string
	if b.cfg.BodyMinRate > 0 {
		bounds = append(bounds, fmt.Sprintf("at %d bytes/s or faster after its first %s", b.cfg.BodyMinRate, b.cfg.BodyGrace))
	}
	if b.cfg.BodyTimeout > 0 {
		bounds = append(bounds, fmt.Sprintf("whole within %s", b.cfg.BodyTimeout))
	}
	return msg.Errorf(msg.CodeRequestTimeout, "request body too slow: %d bytes in %s; a body must arrive %s",
		b.n, time.Since(b.start).Round(time.Millisecond), strings.Join(bounds, ", and "))
}
