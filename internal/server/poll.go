package server

import (
	"errors"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// handlePoll serves GET /v1/poll: long polling. It subscribes like the
// streams do, waits until at least one item (message or gap) is queued, the
// timeout passes, or the hub shuts down, and answers
// {"messages":[...],"gaps":[...],"cursor":"..."} with everything queued at
// that moment. The cursor is the request's, advanced past every message and
// gap of the answer: the cursor= of the next poll. Without a cursor the
// subscription starts at "now", and a timeout answer carries the channels'
// current positions.
func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	timeout, err := s.parsePollTimeout(q)
	if err != nil {
		writeError(w, err)
		return
	}
	req, err := s.parseSubRequest(r, "")
	if err != nil {
		writeError(w, err)
		return
	}
	ts, err := s.beginSession()
	if err != nil {
		writeError(w, err)
		return
	}
	defer ts.close()
	var cur msg.Cursor
	ctx := r.Context()
	if err := ts.open(ctx, func() (sess *hub.Session, err error) {
		sess, cur, err = s.openSession(ctx, req)
		return sess, err
	}); err != nil {
		writeError(w, err)
		return
	}
	sess := ts.sess

	items, err := pollWait(r, sess, timeout)
	switch code := msg.CloseCodeOf(err); {
	case err == nil:
	case code == msg.CloseShutdown:
		// Whatever was queued is dropped: answer with the request's cursor.
		items = nil
	case code == msg.ClosePolicy:
		// The token expired while the poll waited (session.go).
		writeError(w, msg.Errorf(msg.CodeUnauthorized, "token expired"))
		return
	case code == hub.CloseEngineDown:
		writeError(w, hub.ErrEngineDown)
		return
	case code == msg.CloseSlow:
		writeError(w, msg.Errorf(msg.CodeUnavailable,
			"more is waiting after the cursor than one session may queue (%d messages): poll fewer channels at once",
			s.hub.Config().QueueMessages))
		return
	default:
		return // the client left
	}
	items = capPollAnswer(items, maxPollAnswer)
	body := appendPollBody(make([]byte, 0, pollBodySize(items, cur)), items, cur)

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return
	}
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(body); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	// Everything is with the kernel now: lift the deadline, so that the
	// next request on this keep-alive connection does not inherit it.
	_ = rc.SetWriteDeadline(time.Time{})
}

// pollWait waits for the first queued items, the timeout, the session's
// close or the client's departure. It returns no items and no error at the
// timeout. The items are valid until the session is used again.
func pollWait(r *http.Request, sess *hub.Session, timeout time.Duration) ([]hub.Item, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		items, err := sess.TryNext()
		if err != nil || len(items) > 0 {
			return items, err
		}
		select {
		case <-sess.Ready():
		case <-timer.C:
			return nil, nil
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
}

// maxPollAnswer bounds the messages of one long-poll answer, in bytes. A
// reader far behind (many channels, deep history) gets its backlog over
// several polls instead of one answer of any size: the answer's cursor
// covers only what it holds.
const maxPollAnswer = 4 << 20

// capPollAnswer returns the longest prefix of items whose publications fit
// in limit bytes, and at least one item.
func capPollAnswer(items []hub.Item, limit int) []hub.Item {
	n := 0
	for i, it := range items {
		switch {
		case it.Pub != nil:
			n += len(it.Pub.JSON) + 1
		case it.Event != nil:
			n += len(it.Event.JSON) + 1
		}
		if n > limit && i > 0 {
			return items[:i]
		}
	}
	return items
}

// maxTimeoutText bounds the timeout= value read, for bounded work.
const maxTimeoutText = 32

// parsePollTimeout reads timeout=: a Go duration with a unit ("25s",
// "1m30s", "500ms") or a bare number of seconds ("25", "2.5"). Absent means
// Config.PollTimeout; it must lie in [0, Config.PollMaxTimeout]. Zero
// answers at once with whatever is already after the cursor.
func (s *Server) parsePollTimeout(q url.Values) (time.Duration, error) {
	if !q.Has("timeout") {
		return min(s.cfg.PollTimeout, s.cfg.PollMaxTimeout), nil
	}
	v := q.Get("timeout")
	bad := func() error {
		return msg.Errorf(msg.CodeBadRequest, "timeout=%q must be a duration (25s, 1m, 500ms) or seconds (25) from 0 to %s",
			truncate(v), s.cfg.PollMaxTimeout)
	}
	if v == "" || len(v) > maxTimeoutText {
		return 0, bad()
	}
	var d time.Duration
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > s.cfg.PollMaxTimeout.Seconds() {
			return 0, bad()
		}
		d = time.Duration(f * float64(time.Second))
	} else {
		d, err = time.ParseDuration(v)
		if err != nil {
			return 0, bad()
		}
	}
	if d < 0 || d > s.cfg.PollMaxTimeout {
		return 0, bad()
	}
	return d, nil
}

// pollBodySize is a good first capacity for the answer's body.
func pollBodySize(items []hub.Item, cur msg.Cursor) int {
	n := 64 + 32*len(cur)
	for _, it := range items {
		switch {
		case it.Pub != nil:
			n += len(it.Pub.JSON) + 1
		case it.Gap != nil:
			n += 64 + len(it.Gap.Channel)
		case it.Event != nil:
			n += len(it.Event.JSON) + 1
		}
	}
	for ch, p := range cur {
		n += len(ch) + len(p.Epoch)
	}
	return n
}

// appendPollBody appends the answer for items to b, advancing cur past
// them. The messages are pre-encoded, so they are spliced in as they are.
func appendPollBody(b []byte, items []hub.Item, cur msg.Cursor) []byte {
	b = append(b, `{"messages":[`...)
	first := true
	for _, it := range items {
		// Joins and leaves, asked for with join_leave=1, go in messages
		// in order with them; their type tells them apart.
		var frame []byte
		switch {
		case it.Pub != nil:
			frame = it.Pub.JSON
		case it.Event != nil:
			frame = it.Event.JSON
		default:
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, frame...)
	}
	b = append(b, `],"gaps":[`...)
	first = true
	for _, it := range items {
		if it.Gap == nil {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = it.Gap.AppendJSON(b)
	}
	for _, it := range items {
		it.Advance(cur)
	}
	b = append(b, `],"cursor":"`...)
	b = cur.AppendText(b)
	return append(b, "\"}\n"...)
}
