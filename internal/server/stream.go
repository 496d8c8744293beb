package server

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// This file holds the loop shared by the two response-streaming transports,
// Server-Sent Events (sse.go) and NDJSON streaming (handleStream below):
// one hub session, one writer (the handler goroutine), a heartbeat after
// every Config.Heartbeat of silence, a write deadline on every write and a
// flush after every batch, so buffering proxies pass each message at once.

// framer turns a session's items into one transport's bytes. Each method
// appends to b and returns it. cur is the reader's cursor after the item (or
// as it stands, for start and heartbeat); names are cur's channels, sorted.
type framer interface {
	start(b []byte, cur msg.Cursor, names []string) []byte
	item(b []byte, it hub.Item, cur msg.Cursor, names []string) []byte
	heartbeat(b []byte, cur msg.Cursor, names []string) []byte
}

// streamHeaders are the headers of every streaming response. no-cache and
// X-Accel-Buffering: no keep caches and buffering proxies (nginx) from
// holding messages back; Connection: close because a stream ends only when
// its connection should (shutdown, slow reader, error), and so a connection
// never carries a stale write deadline into a next request.
func streamHeaders(h http.Header, contentType string) {
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "close")
}

// serveStream runs a streaming response for req until the client leaves,
// the session closes (shutdown, slow consumer) or a write fails.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, req subRequest, contentType string, f framer) {
	end, ok := s.beginStream()
	if !ok {
		writeError(w, msg.Errorf(msg.CodeUnavailable, "hub is shutting down"))
		return
	}
	defer end()
	ctx := r.Context()
	sess, cur, err := s.openSession(ctx, req)
	if err != nil {
		writeError(w, err)
		return
	}
	defer sess.Release()

	streamHeaders(w.Header(), contentType)
	w.WriteHeader(http.StatusOK)
	c := &streamConn{
		w:       w,
		rc:      http.NewResponseController(w),
		timeout: s.cfg.WriteTimeout,
		names:   slices.Sorted(maps.Keys(cur)),
		cur:     cur,
		f:       f,
	}
	err = c.run(ctx, sess, s.cfg.Heartbeat)
	if code := msg.CloseCodeOf(err); code == msg.CloseSlow || (err != nil && code == 0 && ctx.Err() == nil) {
		s.log.Debug("stream ended", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
	}
}

// streamConn is one streaming response: its writer side. Only the handler
// goroutine uses it.
type streamConn struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	names   []string
	cur     msg.Cursor
	f       framer
	buf     []byte
}

// maxKeptBuf is the largest write buffer kept between batches; a bigger one
// (a large replay) is dropped so that an idle stream holds little memory.
const maxKeptBuf = 64 << 10

// run is the writer loop. It returns the session's close error, ctx's
// error, or the write error that ended the stream.
func (c *streamConn) run(ctx context.Context, sess *hub.Session, heartbeat time.Duration) error {
	if err := c.write(c.f.start(c.buf[:0], c.cur, c.names)); err != nil {
		return err
	}
	timer := time.NewTimer(heartbeat)
	defer timer.Stop()
	for {
		select {
		case <-sess.Ready():
			items, err := sess.TryNext()
			if err != nil {
				return err
			}
			if len(items) == 0 {
				continue
			}
			b := c.buf[:0]
			for _, it := range items {
				if it.Pub == nil && it.Gap == nil {
					continue // no transport frames of its own on these streams
				}
				it.Advance(c.cur)
				b = c.f.item(b, it, c.cur, c.names)
			}
			if err := c.write(b); err != nil {
				return err
			}
			timer.Reset(heartbeat)
		case <-timer.C:
			if err := c.write(c.f.heartbeat(c.buf[:0], c.cur, c.names)); err != nil {
				return err
			}
			timer.Reset(heartbeat)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// write writes b and flushes it, within the write timeout.
func (c *streamConn) write(b []byte) error {
	if cap(b) <= maxKeptBuf {
		c.buf = b[:0]
	} else {
		c.buf = nil
	}
	if len(b) == 0 {
		return nil
	}
	if err := c.rc.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := c.w.Write(b); err != nil {
		return err
	}
	return c.rc.Flush()
}

// appendCursor appends cur's text form, its channels in the order of names
// (sorted, so it equals cur.String() without sorting again).
func appendCursor(b []byte, cur msg.Cursor, names []string) []byte {
	for i, ch := range names {
		if i > 0 {
			b = append(b, ',')
		}
		p := cur[ch]
		b = append(b, ch...)
		b = append(b, ':')
		b = append(b, p.Epoch...)
		b = append(b, ':')
		b = strconv.AppendUint(b, p.Offset, 10)
	}
	return b
}

// handleStream serves GET /v1/stream: NDJSON, one JSON object a line. The
// first line is a heartbeat carrying the reader's starting cursor; then
// envelopes and gap notices as they come, and a heartbeat with the current
// cursor after every Config.Heartbeat of silence.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	req, err := s.parseSubRequest(r, "")
	if err != nil {
		writeError(w, err)
		return
	}
	s.serveStream(w, r, req, "application/x-ndjson", ndjsonFramer{})
}

// ndjsonFramer frames NDJSON lines.
type ndjsonFramer struct{}

func (ndjsonFramer) start(b []byte, cur msg.Cursor, names []string) []byte {
	return ndjsonFramer{}.heartbeat(b, cur, names)
}

func (ndjsonFramer) item(b []byte, it hub.Item, _ msg.Cursor, _ []string) []byte {
	if it.Pub != nil {
		b = append(b, it.Pub.JSON...)
	} else {
		b = it.Gap.AppendJSON(b)
	}
	return append(b, '\n')
}

func (ndjsonFramer) heartbeat(b []byte, cur msg.Cursor, names []string) []byte {
	b = append(b, `{"type":"heartbeat","cursor":"`...)
	b = appendCursor(b, cur, names)
	return append(b, "\"}\n"...)
}
