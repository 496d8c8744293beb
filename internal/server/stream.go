package server

import (
	"bytes"
	"errors"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// This file holds the loop shared by the two response-streaming transports,
// Server-Sent Events (sse.go) and NDJSON streaming (handleStream below):
// one hub session, one writer goroutine, a heartbeat after
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

// errClientGone ends a stream whose client closed its connection.
var errClientGone = errors.New("client went away")

// serveStream runs a streaming response for req until the client leaves,
// the session closes (shutdown, slow consumer) or a write fails.
//
// On an HTTP/1.x connection it takes the connection over (Hijack) once the
// session is open, writes the response itself (chunked) and returns: the
// stream then runs in a goroutine of its own, with a fresh small stack,
// and the request, net/http's buffers and its background reader are freed.
// That keeps an idle stream at a few KiB (docs/benchmarks.md). The
// goroutine is owned by the server (beginStream), so Shutdown waits for it.
// Where the ResponseWriter cannot be hijacked (HTTP/2, tests' recorders),
// the handler streams through the ResponseWriter instead.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, req subRequest, contentType string, f framer) {
	ts, err := s.beginSession()
	if err != nil {
		writeError(w, err)
		return
	}
	var cur msg.Cursor
	if err := ts.open(r.Context(), func() (sess *hub.Session, err error) {
		sess, cur, err = s.openSession(r.Context(), req)
		return sess, err
	}); err != nil {
		ts.close()
		writeError(w, err)
		return
	}
	sess := ts.sess
	streamHeaders(w.Header(), contentType)
	dropConnectionClose(w, r)
	c := &streamConn{
		timeout: s.cfg.WriteTimeout,
		budget:  s.budget,
		names:   slices.Sorted(maps.Keys(cur)),
		cur:     cur,
		f:       f,
	}
	rc := http.NewResponseController(w)
	conn, _, err := rc.Hijack()
	switch {
	case err == nil:
		hs := &hijackedStream{conn: conn, chunked: r.ProtoAtLeast(1, 1)}
		hs.head = appendHead(nil, w.Header(), hs.chunked)
		c.sink = hs
		go hs.serve(c, ts, s.cfg.Heartbeat)
		return
	case !errors.Is(err, http.ErrNotSupported):
		s.log.Warn("stream: hijack failed", "path", r.URL.Path, "err", err)
		ts.close()
		return
	}
	defer ts.close()
	w.WriteHeader(http.StatusOK)
	c.sink = &responseSink{w: w, rc: rc, timeout: s.cfg.WriteTimeout}
	err = c.run(r.Context().Done(), sess, s.cfg.Heartbeat)
	if code := msg.CloseCodeOf(err); code == msg.CloseSlow || (err != nil && code == 0 && !errors.Is(err, errClientGone)) {
		s.log.Debug("stream ended", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
	}
}

// sink writes one batch of frames, with the write deadline, and flushes it.
type sink interface {
	write(b []byte) error
}

// streamConn is one streaming response: its writer side. Only the stream's
// writer goroutine uses it.
type streamConn struct {
	sink    sink
	timeout time.Duration
	budget  *writeBudget // the server's; nil: nothing held
	names   []string
	cur     msg.Cursor
	f       framer
	buf     []byte
}

// maxKeptBuf is the largest write buffer kept between batches; a bigger one
// (a burst, a replay) is dropped, so that a stream idle after a burst holds
// little memory.
const maxKeptBuf = 4 << 10

// maxWrite is about the most one write carries: batches past it are split.
const maxWrite = 32 << 10

// run is the writer loop. It returns the session's close error,
// errClientGone once gone is closed, or the write error that ended the
// stream.
func (c *streamConn) run(gone <-chan struct{}, sess *hub.Session, heartbeat time.Duration) error {
	if err := c.write(c.f.start(c.buf[:0], c.cur, c.names)); err != nil {
		return err
	}
	var hold *time.Timer // for batching; made when first needed
	var window uint64    // the budget's window of the last write of messages
	defer func() {
		if hold != nil {
			hold.Stop()
		}
	}()
	timer := time.NewTimer(heartbeat)
	defer timer.Stop()
	for {
		select {
		case <-sess.Ready():
			// Batching (write_budget.go): while the hub is over its
			// write budget, a stream written to in the current window
			// waits for its end, so what comes meanwhile shares the next
			// write. A closing session or a client gone does not wait.
			if wait := c.budget.hold(window); wait > 0 {
				if hold == nil {
					hold = time.NewTimer(wait)
				} else {
					hold.Reset(wait)
				}
				select {
				case <-hold.C:
				case <-sess.Done():
					hold.Stop()
				case <-gone:
					hold.Stop()
					return errClientGone
				}
			}
			items, err := sess.TryNext()
			if err != nil {
				return err
			}
			if len(items) == 0 {
				continue
			}
			b := c.batch()
			for _, it := range items {
				if it.Pub == nil && it.Gap == nil && it.Event == nil {
					continue // no transport frames of its own on these streams
				}
				it.Advance(c.cur)
				b = c.f.item(b, it, c.cur, c.names)
				if len(b) >= maxWrite {
					// A large batch (a replay) goes out in pieces, each
					// with its own deadline: the deadline bounds a stalled
					// reader, not the size of what it asked for.
					if err := c.write(b); err != nil {
						return err
					}
					b = c.batch()
				}
			}
			if err := c.write(b); err != nil {
				return err
			}
			sess.Written()
			window = c.budget.wrote()
			timer.Reset(heartbeat)
		case <-timer.C:
			if err := c.write(c.f.heartbeat(c.buf[:0], c.cur, c.names)); err != nil {
				return err
			}
			timer.Reset(heartbeat)
		case <-gone:
			return errClientGone
		}
	}
}

// batch returns an empty buffer for the next batch: the stream's own, or
// a pooled one while the stream keeps none (after a large batch).
func (c *streamConn) batch() []byte {
	if c.buf != nil {
		return c.buf[:0]
	}
	return getBuf()
}

// write writes b through the sink, keeping b's array for the next batch
// unless it grew large (then it goes back to the pool).
func (c *streamConn) write(b []byte) error {
	var err error
	if len(b) > 0 {
		err = c.sink.write(b)
	}
	if cap(b) <= maxKeptBuf {
		c.buf = b[:0]
	} else {
		putBuf(b)
		c.buf = nil
	}
	return err
}

// responseSink streams through an http.ResponseWriter.
type responseSink struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (s *responseSink) write(b []byte) error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// hijackedStream streams over a connection taken from net/http: the
// response head goes out with the first write, then one chunk per batch
// (HTTP/1.1; an HTTP/1.0 response is delimited by the connection's close).
type hijackedStream struct {
	conn    net.Conn
	chunked bool
	head    []byte // written, then nil
	timeout time.Duration
	out     []byte // the last write's buffer, kept for the next
}

// serve is the stream's goroutine: it runs the writer loop, ends the
// response, and releases the session, the connection and the server's
// hold (ts.finish). A second goroutine, watch, only reads, to notice the client
// closing its side.
func (h *hijackedStream) serve(c *streamConn, ts *transportSession, heartbeat time.Duration) {
	defer ts.finish()
	sess := ts.sess
	h.timeout = c.timeout
	gone := make(chan struct{})
	watched := make(chan struct{})
	go h.watch(gone, watched)
	err := c.run(gone, sess, heartbeat)
	ts.release()
	if h.chunked && msg.CloseCodeOf(err) != 0 {
		// The hub ended the stream (shutdown, slow reader): end the body
		// properly, so the client sees a complete response and resumes.
		h.conn.SetWriteDeadline(time.Now().Add(h.timeout))
		h.conn.Write([]byte("0\r\n\r\n"))
	}
	h.conn.Close()
	<-watched
}

// watch reads until the connection fails or the client closes it (a
// client sends nothing after its GET), then closes gone.
func (h *hijackedStream) watch(gone, done chan<- struct{}) {
	defer close(done)
	var b [1]byte
	for {
		if _, err := h.conn.Read(b[:]); err != nil {
			close(gone)
			return
		}
	}
}

func (h *hijackedStream) write(b []byte) error {
	// One buffer, one write(2): cheaper than writev for these small
	// frames. The copy is small next to the system call.
	out := h.out
	if out == nil {
		out = getBuf()
	}
	out = append(out[:0], h.head...)
	h.head = nil
	if h.chunked {
		out = strconv.AppendInt(out, int64(len(b)), 16)
		out = append(out, '\r', '\n')
		out = append(out, b...)
		out = append(out, '\r', '\n')
	} else {
		out = append(out, b...)
	}
	defer func() {
		if cap(out) <= maxKeptBuf {
			h.out = out[:0]
		} else {
			putBuf(out)
			h.out = nil
		}
	}()
	if err := h.conn.SetWriteDeadline(time.Now().Add(h.timeout)); err != nil {
		return err
	}
	_, err := h.conn.Write(out)
	return err
}

// appendHead appends a 200 response head with header h.
func appendHead(b []byte, h http.Header, chunked bool) []byte {
	if chunked {
		b = append(b, "HTTP/1.1 200 OK\r\n"...)
		h.Set("Transfer-Encoding", "chunked")
	} else {
		b = append(b, "HTTP/1.0 200 OK\r\n"...)
	}
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	var buf bytes.Buffer
	h.Write(&buf)
	b = append(b, buf.Bytes()...)
	return append(b, "\r\n"...)
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
	switch {
	case it.Pub != nil:
		b = append(b, it.Pub.JSON...)
	case it.Event != nil:
		b = append(b, it.Event.JSON...)
	default:
		b = it.Gap.AppendJSON(b)
	}
	return append(b, '\n')
}

func (ndjsonFramer) heartbeat(b []byte, cur msg.Cursor, names []string) []byte {
	b = append(b, `{"type":"heartbeat","cursor":"`...)
	b = cur.AppendTextOrdered(b, names)
	return append(b, "\"}\n"...)
}
