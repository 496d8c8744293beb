package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// watchdog cancels a connection's context when a phase takes too long:
// first the handshake (ConnectTimeout), then each silence of the stream
// (ReadTimeout). Reads through it push the deadline back.
type watchdog struct {
	t     *time.Timer
	d     atomic.Int64 // current allowance, for Read resets
	fired atomic.Bool
	phase atomic.Value // string: what was being waited for
}

func newWatchdog(cancel context.CancelFunc, d time.Duration, phase string) *watchdog {
	w := &watchdog{}
	w.d.Store(int64(d))
	w.phase.Store(phase)
	w.t = time.AfterFunc(d, func() {
		w.fired.Store(true)
		cancel()
	})
	return w
}

func (w *watchdog) reset(d time.Duration, phase string) {
	w.d.Store(int64(d))
	w.phase.Store(phase)
	w.t.Reset(d)
}

func (w *watchdog) stop() { w.t.Stop() }

// err turns the error of a call that the watchdog may have cut short into
// a clear one.
func (w *watchdog) err(err error) error {
	if w.fired.Load() {
		return fmt.Errorf("%s: timed out after %s", w.phase.Load(), time.Duration(w.d.Load()))
	}
	return err
}

// watchedBody pushes the watchdog back on every read that returns bytes.
type watchedBody struct {
	r io.Reader
	w *watchdog
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.w.t.Reset(time.Duration(b.w.d.Load()))
	}
	return n, err
}

// subQuery is the query of a subscribing endpoint.
func (s *Subscription) subQuery() url.Values {
	q := url.Values{"channel": s.channels}
	if cur := s.wireCursor(); cur != "" {
		q.Set("cursor", cur)
	}
	if s.joinLeave {
		q.Set("join_leave", "1")
	}
	if len(s.info) > 0 {
		q.Set("info", string(s.info))
	}
	return q
}

// openStream sends GET path and checks the answer: 200 with the wanted
// content type. The watchdog then guards the body.
func (s *Subscription) openStream(ctx context.Context, t Transport, path, accept, wantType string, q url.Values, wd *watchdog) (*http.Response, error) {
	c := s.c
	req, err := c.newRequest(ctx, http.MethodGet, c.endpoint(path, q), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, wd.err(err)
	}
	if resp.StatusCode != http.StatusOK {
		se := statusError(resp)
		resp.Body.Close()
		if unsupportedStatus(resp.StatusCode) {
			return nil, &UnsupportedError{Transport: t, Err: se}
		}
		return nil, se
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != wantType {
		resp.Body.Close()
		return nil, &UnsupportedError{Transport: t, Err: fmt.Errorf("answer has Content-Type %q, want %s", resp.Header.Get("Content-Type"), wantType)}
	}
	return resp, nil
}

// runSSE is one Server-Sent Events connection.
func (s *Subscription) runSSE(ctx context.Context, a *attempt) error {
	c := s.c
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	wd := newWatchdog(cancel, c.opts.ConnectTimeout, "sse: connect to "+c.base.Host)
	defer wd.stop()
	resp, err := s.openStream(connCtx, SSE, "/v1/sse", "text/event-stream", "text/event-stream", s.subQuery(), wd)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	s.opened(a)
	wd.reset(c.opts.ReadTimeout, "sse: waiting for data from the hub")
	dec := newSSEDecoder(&watchedBody{r: resp.Body, w: wd}, c.opts.MaxFrame)
	for {
		ev, err := dec.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == io.EOF {
				return errors.New("sse: the hub ended the stream")
			}
			if errors.Is(err, ErrProtocol) {
				return fmt.Errorf("sse: %w", err)
			}
			return wd.err(fmt.Errorf("sse: read: %w", err))
		}
		if !ev.HasData {
			// The opening block holds only id: <starting cursor>.
			if ev.IDSet {
				if err := s.hintCursor(ev.ID); err != nil {
					return fmt.Errorf("sse: starting id: %w", err)
				}
			}
			s.inPlace()
			continue
		}
		s.inPlace()
		switch ev.Type {
		case "", msg.TypeMessage:
			f, err := decodeFrame(ev.Data)
			if err == nil && f.Type != msg.TypeMessage {
				err = fmt.Errorf("%w: event: message carries type %q", ErrProtocol, f.Type)
			}
			if err == nil {
				err = s.deliverMessage(ctx, a, f.envelope())
			}
			if err != nil {
				return fmt.Errorf("sse: %w", err)
			}
		case msg.TypeGap:
			f, err := decodeFrame(ev.Data)
			if err == nil {
				err = s.deliverGap(ctx, a, f.gap())
			}
			if err != nil {
				return fmt.Errorf("sse: %w", err)
			}
		case msg.TypeJoin, msg.TypeLeave:
			f, err := decodeFrame(ev.Data)
			if err == nil {
				err = s.deliverPresence(ctx, f.presence())
			}
			if err != nil {
				return fmt.Errorf("sse: %w", err)
			}
		default:
			// event types of later versions
		}
	}
}

// runStream is one NDJSON streaming connection.
func (s *Subscription) runStream(ctx context.Context, a *attempt) error {
	c := s.c
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	wd := newWatchdog(cancel, c.opts.ConnectTimeout, "stream: connect to "+c.base.Host)
	defer wd.stop()
	resp, err := s.openStream(connCtx, Stream, "/v1/stream", "application/x-ndjson", "application/x-ndjson", s.subQuery(), wd)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	s.opened(a)
	wd.reset(c.opts.ReadTimeout, "stream: waiting for data from the hub")
	dec := newLineDecoder(&watchedBody{r: resp.Body, w: wd}, c.opts.MaxFrame)
	for {
		line, err := dec.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == io.EOF {
				return errors.New("stream: the hub ended the stream")
			}
			if errors.Is(err, ErrProtocol) {
				return fmt.Errorf("stream: %w", err)
			}
			return wd.err(fmt.Errorf("stream: read: %w", err))
		}
		f, err := decodeFrame(line)
		if err != nil {
			return fmt.Errorf("stream: %w", err)
		}
		switch f.Type {
		case msg.TypeMessage:
			s.inPlace()
			err = s.deliverMessage(ctx, a, f.envelope())
		case msg.TypeGap:
			s.inPlace()
			err = s.deliverGap(ctx, a, f.gap())
		case msg.TypeHeartbeat:
			err = s.hintCursor(f.Cursor)
			s.inPlace()
		case msg.TypeJoin, msg.TypeLeave:
			err = s.deliverPresence(ctx, f.presence())
		}
		if err != nil {
			return fmt.Errorf("stream: %w", err)
		}
	}
}

// runPoll long-polls until a poll fails. The first poll of a subscription
// whose positions are not all known asks with timeout=0, so that the hub
// answers at once with where "now" is.
func (s *Subscription) runPoll(ctx context.Context, a *attempt) error {
	c := s.c
	for {
		wait := c.opts.PollTimeout
		if !s.knowsAll() {
			wait = 0
		}
		q := s.subQuery()
		q.Set("client", s.pollClient)
		q.Set("timeout", strconv.FormatFloat(wait.Seconds(), 'f', -1, 64))
		p, err := s.pollOnce(ctx, q, wait)
		if err != nil {
			return err
		}
		if !a.opened {
			s.opened(a)
		}
		for i := range p.Gaps {
			if err := s.deliverGap(ctx, a, &p.Gaps[i]); err != nil {
				return fmt.Errorf("poll: %w", err)
			}
		}
		for _, it := range p.items {
			var err error
			if it.Presence != nil {
				err = s.deliverPresence(ctx, it.Presence)
			} else {
				err = s.deliverMessage(ctx, a, it.Message)
			}
			if err != nil {
				return fmt.Errorf("poll: %w", err)
			}
		}
		if err := s.hintCursor(p.Cursor); err != nil {
			return fmt.Errorf("poll: cursor: %w", err)
		}
		if s.knowsAll() {
			s.inPlace()
		}
	}
}

// maxPollBody bounds a long-poll answer.
func (c *Client) maxPollBody() int64 { return c.maxReplyBody() }

func (s *Subscription) pollOnce(ctx context.Context, q url.Values, wait time.Duration) (*pollAnswer, error) {
	c := s.c
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	wd := newWatchdog(cancel, wait+c.opts.ConnectTimeout, "poll: waiting for the answer")
	defer wd.stop()
	resp, err := s.openStream(connCtx, Poll, "/v1/poll", "application/json", "application/json", q, wd)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	wd.reset(c.opts.ReadTimeout, "poll: reading the answer")
	limit := c.maxPollBody()
	body, err := io.ReadAll(io.LimitReader(&watchedBody{r: resp.Body, w: wd}, limit+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, wd.err(fmt.Errorf("poll: read: %w", err))
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("poll: %w: answer longer than %d bytes", ErrProtocol, limit)
	}
	p, err := decodePoll(body)
	if err != nil {
		return nil, fmt.Errorf("poll: %w", err)
	}
	return p, nil
}
