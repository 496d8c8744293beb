package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/duplexhq/duplex/msg"
)

// wsSubprotocol is the subprotocol the client offers.
const wsSubprotocol = "duplex.v1"

// dialWS opens a WebSocket to /v1/ws within ConnectTimeout. A hub (or a
// proxy) that answers the upgrade with a plain HTTP status gets an
// *UnsupportedError, unless the status says "later" (429, 5xx) or
// "unauthorized" (401).
func (c *Client) dialWS(ctx context.Context) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	h := make(http.Header)
	c.setHeaders(h)
	u := c.endpoint("/v1/ws", nil)
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient:      c.wshc,
		HTTPHeader:      h,
		Subprotocols:    []string{wsSubprotocol},
		CompressionMode: c.compressionMode(),
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			se := statusError(resp)
			if resp.StatusCode == http.StatusUnauthorized || retryableStatus(resp.StatusCode) {
				return nil, se
			}
			return nil, &UnsupportedError{Transport: WebSocket, Err: se}
		}
		if resp != nil {
			// 101 but a bad handshake: something in between is no
			// WebSocket peer.
			return nil, &UnsupportedError{Transport: WebSocket, Err: err}
		}
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("websocket handshake with %s: timed out after %s", c.base.Host, c.opts.ConnectTimeout)
		}
		return nil, err
	}
	conn.SetReadLimit(int64(c.opts.MaxFrame))
	return conn, nil
}

// wsCloseError maps a WebSocket close to *msg.CloseError, and leaves other
// errors alone.
func wsCloseError(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return &msg.CloseError{Code: msg.CloseCode(ce.Code), Reason: ce.Reason}
	}
	return err
}

// wsEnded maps the error of a WebSocket read or write that failed because
// the connection just ended — EOF in or between frames, a reset, a broken
// pipe, a socket error, or the connection closed under the read after the
// pinger found it dead — to a *msg.CloseError of msg.CloseAbnormal (1006,
// RFC 6455 §7.1.5), wrapping what the socket said. That is what the client
// sees when the hub cuts a slow consumer whose socket is full: the 1013
// close frame cannot be written, so the hub drops the TCP connection once
// its write timeout passes. 1006 is retried like 1013, from the cursor
// (see [fatal]). Other errors, such as a frame the library refused, are
// returned as they are.
func wsEnded(err error) error {
	var oe *net.OpError
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &oe) {
		return fmt.Errorf("%w (%w)", &msg.CloseError{Code: msg.CloseAbnormal, Reason: "connection ended without a close frame"}, err)
	}
	return err
}

// wsCommand is one command frame (msg.Command) with the numeric id this
// client gives its commands.
func wsCommand(id uint64, typ msg.CommandType, channel string) msg.Command {
	return msg.Command{ID: strconv.AppendUint(nil, id, 10), Type: typ, Channel: channel}
}

func writeJSON(ctx context.Context, conn *websocket.Conn, timeout time.Duration, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return conn.Write(ctx, websocket.MessageText, b)
}

// runWS is one WebSocket subscription connection: subscribe commands for
// every channel, then frames until the connection ends. It reads on this
// goroutine and pings from a second one, which it waits for.
func (s *Subscription) runWS(ctx context.Context, a *attempt) error {
	c := s.c
	conn, err := c.dialWS(ctx)
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	s.opened(a)

	connCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	interval := c.opts.ReadTimeout / 3
	wg.Go(func() { wsPinger{conn: conn, interval: interval, timeout: c.opts.ConnectTimeout}.run(connCtx) })

	// Subscribe commands; the ids are the channel's index + 1.
	for i, ch := range s.channels {
		cmd := wsCommand(uint64(i+1), msg.CmdSubscribe, ch)
		cmd.JoinLeave, cmd.Info = s.joinLeave, s.info
		if pos, ok := s.recv[ch]; ok {
			if pos.Epoch != "" {
				epoch := pos.Epoch
				cmd.Epoch = &epoch
			}
			off := pos.Offset
			cmd.Offset = &off
		}
		if err := writeJSON(connCtx, conn, c.opts.ConnectTimeout, cmd); err != nil {
			err = wsCloseError(err)
			if msg.CloseCodeOf(err) == 0 {
				err = wsEnded(err)
			}
			return fmt.Errorf("websocket subscribe: %w", err)
		}
	}
	pending := len(s.channels)
	acked := make([]bool, len(s.channels))
	for {
		rctx, cancel := context.WithTimeout(connCtx, c.opts.ReadTimeout)
		typ, b, err := conn.Read(rctx)
		timedOut := rctx.Err() != nil && connCtx.Err() == nil
		cancel()
		if err != nil {
			if timedOut {
				return fmt.Errorf("websocket: no frame from the hub for %s", c.opts.ReadTimeout)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			err = wsCloseError(err)
			if msg.CloseCodeOf(err) == 0 {
				err = fmt.Errorf("websocket read: %w", wsEnded(err))
			}
			return err
		}
		if typ != websocket.MessageText {
			conn.Close(websocket.StatusUnsupportedData, "binary frame")
			return fmt.Errorf("%w: binary WebSocket frame from the hub", ErrProtocol)
		}
		f, err := decodeFrame(b)
		if err != nil {
			conn.Close(websocket.StatusUnsupportedData, "not a JSON object")
			return err
		}
		switch f.Type {
		case msg.TypeMessage:
			err = s.deliverMessage(ctx, a, f.envelope())
		case msg.TypeGap:
			err = s.deliverGap(ctx, a, f.gap())
		case msg.TypeJoin, msg.TypeLeave:
			err = s.deliverPresence(ctx, f.presence())
		case "ok", "error":
			if f.ID == 0 || f.ID > uint64(len(s.channels)) || acked[f.ID-1] {
				continue // a reply to a ping, or to nothing of ours
			}
			ch := s.channels[f.ID-1]
			if f.Type == "error" {
				conn.Close(websocket.StatusNormalClosure, "")
				return fmt.Errorf("websocket subscribe %q: %w", ch, &msg.Error{Code: f.Code, Message: f.Message})
			}
			if f.Epoch != "" && !msg.ValidEpoch(f.Epoch) {
				return fmt.Errorf("%w: subscribe reply with invalid epoch %q", ErrProtocol, f.Epoch)
			}
			acked[f.ID-1] = true
			s.hint(ch, msg.Position{Epoch: f.Epoch, Offset: f.Offset})
			if pending--; pending == 0 {
				s.inPlace()
			}
		default:
			// pong, and frame types of later versions
		}
		if err != nil {
			if errors.Is(err, ErrProtocol) {
				conn.Close(websocket.StatusProtocolError, "")
			}
			return err
		}
	}
}

// wsPinger sends a ping command every interval, so that a silent hub shows
// up as a read timeout and proxies see traffic.
type wsPinger struct {
	conn     *websocket.Conn
	interval time.Duration
	timeout  time.Duration
}

func (p wsPinger) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for id := uint64(1 << 32); ; id++ {
		select {
		case <-t.C:
			if err := writeJSON(ctx, p.conn, p.timeout, wsCommand(id, msg.CmdPing, "")); err != nil {
				p.conn.CloseNow()
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// wsCommander is the Client's WebSocket for publish commands: one reader
// goroutine matches replies to calls by id.
type wsCommander struct {
	conn    *websocket.Conn
	timeout time.Duration
	done    chan struct{} // closed when the reader ends; err is set then
	err     error
	stop    context.CancelFunc

	mu      sync.Mutex // guards nextID, pending
	nextID  uint64
	pending map[uint64]chan *frame
}

func (c *Client) dialCommander(ctx context.Context) (*wsCommander, error) {
	conn, err := c.dialWS(ctx)
	if err != nil {
		return nil, err
	}
	rctx, stop := context.WithCancel(context.Background())
	w := &wsCommander{conn: conn, timeout: c.opts.RequestTimeout, done: make(chan struct{}), stop: stop, pending: make(map[uint64]chan *frame)}
	go w.read(rctx)
	return w, nil
}

// commander returns the client's live command WebSocket, dialing a new one
// if there is none or the last one died.
func (c *Client) commander(ctx context.Context) (*wsCommander, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	old := c.cmd
	if old != nil {
		select {
		case <-old.done:
			c.cmd = nil
		default:
			c.mu.Unlock()
			return old, nil
		}
	}
	c.mu.Unlock()
	if old != nil {
		old.close()
	}
	w, err := c.dialCommander(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	closed, winner := c.closed, c.cmd
	if !closed && winner == nil {
		c.cmd = w
	}
	c.mu.Unlock()
	switch {
	case closed:
		w.close()
		return nil, ErrClosed
	case winner != nil: // another call won the race
		w.close()
		return winner, nil
	}
	return w, nil
}

// read is the commander's reader goroutine.
func (w *wsCommander) read(ctx context.Context) {
	var err error
	defer func() {
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
		close(w.done)
	}()
	for {
		var typ websocket.MessageType
		var b []byte
		typ, b, err = w.conn.Read(ctx)
		if err != nil {
			err = wsCloseError(err)
			return
		}
		if typ != websocket.MessageText {
			err = fmt.Errorf("%w: binary WebSocket frame from the hub", ErrProtocol)
			w.conn.Close(websocket.StatusUnsupportedData, "")
			return
		}
		var f *frame
		f, err = decodeFrame(b)
		if err != nil {
			w.conn.Close(websocket.StatusUnsupportedData, "")
			return
		}
		if f.ID == 0 {
			continue // unasked frames: this connection subscribes to nothing
		}
		w.mu.Lock()
		ch := w.pending[f.ID]
		delete(w.pending, f.ID)
		w.mu.Unlock()
		if ch != nil {
			ch <- f // buffered
		}
	}
}

// call sends cmd and waits for its reply.
func (w *wsCommander) call(ctx context.Context, cmd msg.Command) (*frame, error) {
	reply := make(chan *frame, 1)
	w.mu.Lock()
	w.nextID++
	id := w.nextID
	cmd.ID = strconv.AppendUint(nil, id, 10)
	w.pending[id] = reply
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.pending, id)
		w.mu.Unlock()
	}()
	if err := writeJSON(ctx, w.conn, w.timeout, cmd); err != nil {
		return nil, fmt.Errorf("websocket %s: %w", cmd.Type, wsCloseError(err))
	}
	select {
	case f := <-reply:
		if f.Type == "error" {
			return nil, &msg.Error{Code: f.Code, Message: f.Message}
		}
		if f.Type != "ok" {
			return nil, fmt.Errorf("%w: reply of type %q to %s", ErrProtocol, f.Type, cmd.Type)
		}
		return f, nil
	case <-w.done:
		w.mu.Lock()
		err := w.err
		w.mu.Unlock()
		return nil, fmt.Errorf("websocket %s: connection lost before the reply (the command may or may not have been applied): %w", cmd.Type, err)
	case <-ctx.Done():
		return nil, fmt.Errorf("websocket %s: %w", cmd.Type, ctx.Err())
	}
}

func (w *wsCommander) publish(ctx context.Context, channel string, data json.RawMessage) (msg.Published, error) {
	f, err := w.call(ctx, publishCommand(channel, data))
	if err != nil {
		return msg.Published{}, fmt.Errorf("publish: %w", err)
	}
	p := msg.Published{Channel: channel, Epoch: f.Epoch, Offset: f.Offset, Time: f.Time}
	if !msg.ValidEpoch(p.Epoch) || p.Offset == 0 {
		return msg.Published{}, fmt.Errorf("publish: %w: reply without epoch or offset", ErrProtocol)
	}
	return p, nil
}

func (w *wsCommander) history(ctx context.Context, channel string, after uint64, limit int) (*msg.History, error) {
	f, err := w.call(ctx, historyCommand(channel, after, limit))
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	h := &msg.History{Channel: channel, Epoch: f.Epoch, Messages: f.Messages, Next: f.Next, Oldest: f.Oldest, Latest: f.Latest}
	if h.Messages == nil {
		h.Messages = []msg.Envelope{}
	}
	return h, nil
}

// closeHandshakeTimeout bounds the polite close of the command
// WebSocket; a hub that does not answer the close frame is cut after it.
const closeHandshakeTimeout = 500 * time.Millisecond

// close closes the connection and waits for the reader.
func (w *wsCommander) close() {
	// Cancelling the reader's context is what cuts a stuck handshake: the
	// reader holds the read lock that the handshake waits for.
	cut := time.AfterFunc(closeHandshakeTimeout, w.stop)
	defer cut.Stop()
	w.conn.Close(websocket.StatusNormalClosure, "")
	w.stop()
	<-w.done
}

// compressionMode is what the WebSocket handshake offers: permessage-deflate
// with no context kept on either side, so neither end holds a window
// between messages (and the hub can share one compressed frame among
// subscribers), unless DialOptions.NoCompression.
func (c *Client) compressionMode() websocket.CompressionMode {
	if c.opts.NoCompression {
		return websocket.CompressionDisabled
	}
	return websocket.CompressionNoContextTakeover
}

func publishCommand(channel string, data json.RawMessage) msg.Command {
	cmd := wsCommand(0, msg.CmdPublish, channel)
	cmd.Data = data
	return cmd
}

func historyCommand(channel string, after uint64, limit int) msg.Command {
	cmd := wsCommand(0, msg.CmdHistory, channel)
	cmd.After = &after
	if limit > 0 {
		cmd.Limit = &limit
	}
	return cmd
}
