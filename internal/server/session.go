package server

import (
	"context"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// The one open/close sequence of every subscribing transport (WebSocket,
// SSE and NDJSON streams, long poll), so no transport can skip a step:
//
//	open:  beginStream (Shutdown will wait; refused once it runs)
//	       → open the hub session (the transport's own subscribe)
//	       → watch the token's expiry (expireWith: 1008 token expired)
//	close: stop the expiry watch → Release the session → end (Shutdown
//	       may return), in that order; release and end may be apart, for
//	       a transport that still closes its connection after releasing.

// transportSession is one transport's hold on a hub session. The
// transport's owning goroutine calls release and end once each, or close.
type transportSession struct {
	sess       *hub.Session // nil until open succeeds
	stopExpiry func() bool
	onEnd      []func()
	end        func()
}

// errShuttingDown answers a transport that asks to begin during Shutdown.
var errShuttingDown = msg.Errorf(msg.CodeUnavailable, "hub is shutting down")

// beginSession registers a transport with Shutdown.
func (s *Server) beginSession() (*transportSession, error) {
	end, ok := s.beginStream()
	if !ok {
		return nil, errShuttingDown
	}
	return &transportSession{end: end, stopExpiry: func() bool { return false }}, nil
}

// open opens the hub session with openFn and starts the expiry watch of
// the token in ctx (the request's: it carries the claims). On error
// nothing is open, and the caller still calls close.
func (ts *transportSession) open(ctx context.Context, openFn func() (*hub.Session, error)) error {
	sess, err := openFn()
	if err != nil {
		return err
	}
	ts.sess = sess
	ts.stopExpiry = expireWith(ctx, sess)
	return nil
}

// atEnd adds f to what end runs (before the Shutdown registration ends).
func (ts *transportSession) atEnd(f func()) { ts.onEnd = append(ts.onEnd, f) }

// release stops the expiry watch and releases the session.
func (ts *transportSession) release() {
	ts.stopExpiry()
	if ts.sess != nil {
		ts.sess.Release()
	}
}

// finish runs the atEnd hooks and ends the Shutdown registration.
func (ts *transportSession) finish() {
	for _, f := range ts.onEnd {
		f()
	}
	ts.end()
}

// close is release then finish.
func (ts *transportSession) close() {
	ts.release()
	ts.finish()
}
