package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// The WebSocket transport (DESIGN §4).
//
// A connection has no goroutine of its own while idle. A reader runs while
// there are frames to read (woken by epoll on Linux) and serves commands;
// the server's writers (ws_write.go) drain the connection's hub session,
// and they alone write data frames. Replies travel through the session too
// (Session.Send, or the Ack hook of Subscribe), so they keep their order
// with the messages. Whatever ends a connection — a protocol error seen by
// the reader, the hub closing the session (slow consumer, shutdown), a
// write failure — closes the session with a close code; the drain that
// sees it has the close frame sent, waits for the readers and releases the
// session.
//
// /v1/echo with Upgrade runs the same machinery with no channels: the
// reader queues each message back through the session, so echo has the
// same limits, the same UTF-8 rule and the same shutdown as /v1/ws.

// wsSubprotocol is negotiated when the client offers it.
const wsSubprotocol = "duplex.v1"

// wsFrameSlack is the room a frame may take beyond --max-message: the
// command around a publish's data.
const wsFrameSlack = 4096

// wsCloseWait bounds the close handshake (the peer's close frame after
// ours); wsProtocolErrorWait is that after a protocol error.
const (
	wsCloseWait         = 5 * time.Second
	wsProtocolErrorWait = time.Second
)

// wsHistoryBytes bounds one history reply; a page stops early (and says so
// with next) rather than exceed it. At least one message is always sent.
const wsHistoryBytes = 1 << 20

// wsState is a server's WebSocket bookkeeping: the connection count (for
// the cap), and the live connections with the goroutine that pings them.
type wsState struct {
	conns atomic.Int64

	mu      sync.Mutex // guards live, stop, poller, writers, slot
	live    map[*wsConn]struct{}
	stop    chan struct{} // closed to stop the running sweeper; nil if none
	poller  *wsPoller     // wakes idle readers (Linux); nil if none runs
	writers *wsWriters    // nil if none run
	slot    int           // the ping slot of the next connection
}

// wsPingSlots spreads pings over the interval: the sweeper wakes this many
// times per interval and pings one slot's connections each time, so their
// pongs (and the readers they wake) do not all arrive at once.
const wsPingSlots = 10

func (s *Server) maxWebSockets() int {
	switch n := s.cfg.MaxWebSockets; {
	case n > 0:
		return n
	case n < 0:
		return 0
	}
	if s.cfg.MaxConnections > 0 {
		return s.cfg.MaxConnections * 9 / 10
	}
	return 0
}

// handleWS serves GET /v1/ws.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	s.serveWS(w, r, false)
}

// handleEchoWS serves GET /v1/echo with Upgrade: websocket.
func (s *Server) handleEchoWS(w http.ResponseWriter, r *http.Request) {
	s.serveWS(w, r, true)
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request, echo bool) {
	if !isWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		writeError(w, msg.Errorf(msg.CodeBadRequest, "%s needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)", r.URL.Path))
		return
	}
	if origin := r.Header.Get("Origin"); !s.originAllowed(r, origin) {
		writeError(w, msg.Errorf(msg.CodeForbidden, "origin %q may not open WebSockets here (see --allowed-origins)", truncate(origin)))
		return
	}
	end, ok := s.beginStream()
	if !ok {
		writeError(w, msg.Errorf(msg.CodeUnavailable, "shutting down"))
		return
	}
	n := s.ws.conns.Add(1)
	done := func() { s.ws.conns.Add(-1); end() }
	if max := s.maxWebSockets(); max > 0 && n > int64(max) {
		done()
		w.Header().Set("Retry-After", "5")
		writeError(w, msg.Errorf(msg.CodeUnavailable, "too many WebSocket connections (at most %d)", max))
		return
	}
	sess, err := s.hub.NewSession()
	if err != nil {
		done()
		writeError(w, err)
		return
	}

	// The connection's context carries the token's claims, and nothing
	// of the request, which the connection outlives.
	ctx := context.WithValue(context.Background(), claimsKey{}, r.Context().Value(claimsKey{}))
	wc := &wsConn{s: s, sess: sess, echo: echo, ctx: ctx, laterAt: -1, client: newClientID()}
	hj := &wsHijacker{ResponseWriter: w}
	c, err := websocket.Accept(hj, r, &websocket.AcceptOptions{
		Subprotocols:       []string{wsSubprotocol},
		InsecureSkipVerify: true, // originAllowed decided above
		OnPongReceived:     func(context.Context, []byte) { wc.alive.Store(true) },
	})
	if err != nil {
		sess.Release()
		done()
		s.log.Debug("websocket accept failed", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		return // Accept answered the request
	}
	wc.c, wc.nc = c, hj.nc
	wc.limit = int64(s.hub.Config().MaxMessage + wsFrameSlack)
	c.SetReadLimit(wc.limit)
	if rate := s.cfg.PublishRate; rate > 0 {
		wc.bucket = tokenBucket{rate: rate, burst: max(rate, 1), tokens: max(rate, 1), last: time.Now()}
	}
	wc.done = done
	wc.stopExpiry = expireWith(r.Context(), sess)
	// The handler returns, so net/http lets go of the request, its
	// buffers and its goroutine (with the stack it grew); the connection
	// lives on in the goroutines it starts when it has work, and ends
	// (finish) with done, which Shutdown waits for (beginStream).
	wc.start()
}

// wsConn is one WebSocket connection.
type wsConn struct {
	s     *Server
	ctx   context.Context // connection-lifetime: carries the token's claims
	sess  *hub.Session
	c     *websocket.Conn
	nc    *wsNetConn
	echo  bool
	limit int64

	done       func()      // ends the beginStream registration; called by finish
	stopExpiry func() bool // stops the token's expiry watch; called by finish

	w     *wsWriters    // the server's writers, while the connection is live
	wrote atomic.Uint64 // the writers' period of the last write (see wsWriters)
	// laterAt is wc's index in w.later while it is there (w.mu guards it);
	// it may be stale otherwise, so expedite checks the entry.
	laterAt int
	// repliesIn counts replies queued (counted before they are), and
	// repliesOut those written: while they differ a reply waits, and the
	// connection is not held for coalescing.
	repliesIn, repliesOut atomic.Uint64
	// client is the connection's presence client id (ws_presence.go).
	client string
	slot   int // its ping slot, in [0, wsPingSlots)

	// writing is true while the connection is on a writer list or
	// being drained (ws_write.go); the session's notify hook, or a due
	// ping, schedules it when it is false. The drain that finds the
	// session closed has the close frame sent and the connection
	// finished; writing stays set after it.
	writing atomic.Bool
	// pingDue asks the next drain to send a ping first.
	pingDue atomic.Bool
	// reading is true while a reader goroutine (readLoop) runs; readers
	// counts them for finish to wait on. With epoll, a reader exits when
	// the socket would block between messages and the poller starts the
	// next; fd is the socket's, as the poller knows it.
	reading atomic.Bool
	readers sync.WaitGroup
	fd      int

	// alive is set whenever the peer shows it is there (a frame, a pong)
	// and cleared by each ping sweep; silent counts sweeps without it
	// (the sweeper's alone).
	alive  atomic.Bool
	silent int
	// dropped is set when the TCP connection is gone, so no close frame
	// is attempted.
	dropped atomic.Bool

	bucket tokenBucket // the reader's alone
}

// start serves the connection. It has no goroutine of its own: a writer
// (drain) runs when the session has something to write, and a reader
// (readLoop) runs while there is something to read — always, without
// epoll; with epoll, only while the socket has data. Whatever ends the
// connection closes the session; the drain that sees that sends the close
// frame and finishes.
func (wc *wsConn) start() {
	wc.alive.Store(true)
	// reading before add: the poller must not start a reader of its own
	// before the first one has parked.
	wc.reading.Store(true)
	wc.nc.polled = wc.s.ws.add(wc)
	wc.readers.Add(1)
	go wc.readLoop()
	wc.sess.SetNotify(wc.notify)
	wc.notify() // for anything queued before the hook was set
}

// readLoop reads until the connection ends (and closes the session with
// the code to end it with) or, when polled, until the socket would block
// between messages (and parks: the poller starts the next reader).
func (wc *wsConn) readLoop() {
	defer wc.readers.Done()
	code, reason, park := wc.read()
	if park {
		wc.reading.Store(false) // before rearm, or a wake-up could be lost
		wc.s.ws.rearm(wc)
		return
	}
	wc.sess.Close(code, reason)
}

// expedite writes what the connection holds without a coalescing delay:
// after a reply has been queued.
func (wc *wsConn) expedite() {
	if wc.w != nil {
		wc.w.expedite(wc)
	}
}

// notify is the session's hook: it runs with the session locked.
func (wc *wsConn) notify() {
	if wc.writing.CompareAndSwap(false, true) {
		wc.schedule()
		return
	}
	if wc.w != nil && wc.closing() {
		wc.w.expedite(wc) // a close frame is not held for coalescing
	}
}

// schedule gives wc, which has something to write, to a writer.
func (wc *wsConn) schedule() {
	if wc.w != nil {
		wc.w.schedule(wc)
		return
	}
	// No writers: the server is shutting down. A goroutine drains
	// what is left and finishes the connection.
	go func() {
		b := getBuf()
		defer func() { putBuf(b) }()
		wc.drain(&b, true)
	}()
}

// add registers wc for ping sweeps and, where epoll runs, for wake-ups,
// starting the sweeper and the poller if they are not running. It reports
// whether wc is polled.
func (st *wsState) add(wc *wsConn) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.live == nil {
		st.live = make(map[*wsConn]struct{})
	}
	st.live[wc] = struct{}{}
	wc.slot = st.slot
	st.slot = (st.slot + 1) % wsPingSlots
	if st.writers == nil {
		if end, ok := wc.s.beginStream(); ok {
			st.writers = startWSWriters(wc.s.cfg.WriteDelay, end)
		}
	}
	wc.w = st.writers
	if st.stop == nil {
		end, ok := wc.s.beginStream()
		if !ok {
			return false // shutting down: the hub is closing every session
		}
		st.stop = make(chan struct{})
		go st.sweep(wc.s, st.stop, end)
	}
	if st.poller == nil {
		p, err := newWSPoller()
		if err != nil {
			return false
		}
		end, ok := wc.s.beginStream()
		if !ok {
			p.closeFDs()
			return false
		}
		st.poller = p
		go p.run(end)
	}
	return st.poller.add(wc) == nil
}

// rearm asks the poller for wc's next readable event.
func (st *wsState) rearm(wc *wsConn) {
	st.mu.Lock()
	p := st.poller
	st.mu.Unlock()
	if p != nil {
		p.rearm(wc)
	}
}

// unpoll stops wake-ups of wc: no reader of it starts after unpoll.
func (st *wsState) unpoll(wc *wsConn) {
	st.mu.Lock()
	p := st.poller
	st.mu.Unlock()
	if p != nil {
		p.remove(wc)
	}
}

// remove unregisters wc; the sweeper and the poller stop with the last
// connection.
func (st *wsState) remove(wc *wsConn) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.live, wc)
	if len(st.live) == 0 {
		if st.stop != nil {
			close(st.stop)
			st.stop = nil
		}
		if st.poller != nil {
			st.poller.stop()
			st.poller = nil
		}
		if st.writers != nil {
			st.writers.close()
			st.writers = nil
		}
	}
}

// sweep pings every connection once per PingInterval, a slot of them at a
// time, and drops those silent since their slot's previous turn twice. One
// goroutine per server, not a ticker per connection; the pings are written
// by the writers.
func (st *wsState) sweep(s *Server, stop <-chan struct{}, end func()) {
	defer end()
	tick := time.NewTicker(s.cfg.PingInterval / wsPingSlots)
	defer tick.Stop()
	var conns []*wsConn
	for turn := 0; ; turn = (turn + 1) % wsPingSlots {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		st.mu.Lock()
		select {
		case <-stop: // stopped while the tick fired; a new sweeper may run
			st.mu.Unlock()
			return
		default:
		}
		conns = conns[:0]
		for wc := range st.live {
			if wc.slot == turn {
				conns = append(conns, wc)
			}
		}
		st.mu.Unlock()
		for _, wc := range conns {
			if wc.alive.Swap(false) {
				wc.silent = 0
			} else if wc.silent++; wc.silent >= 2 {
				// Silent for two intervals: not listening, so no close
				// frame; the client sees the connection drop.
				s.log.Debug("websocket peer silent for two ping intervals: dropped")
				wc.dropped.Store(true)
				wc.sess.Close(msg.CloseGoingAway, "peer silent for two ping intervals")
				wc.c.CloseNow()
				continue
			}
			// The pong sets alive.
			wc.pingDue.Store(true)
			if wc.writing.CompareAndSwap(false, true) {
				wc.schedule()
			}
		}
		clear(conns)
	}
}

// finish ends the connection: no more readers, the close frame for err
// (a *msg.CloseError; nil: just drop it), the readers gone, the session
// released.
func (wc *wsConn) finish(err error) {
	wc.s.ws.unpoll(wc)
	wc.nc.blocking.Store(true) // the close handshake waits for the peer
	// Bound that wait: the library's is 5 s for a frame header but none
	// for skipping the rest of a frame, which a peer could trickle. After
	// a protocol error the stream cannot be parsed anyway: wait only
	// long enough for the peer to take the close frame before the TCP
	// close, so it is not lost to a reset.
	wait := wsCloseWait
	if msg.CloseCodeOf(err) == msg.CloseProtocol {
		wait = wsProtocolErrorWait
	}
	wc.nc.Conn.SetReadDeadline(time.Now().Add(wait))
	if err != nil {
		wc.close(err)
	} else {
		wc.c.CloseNow()
	}
	wc.readers.Wait()
	wc.s.ws.remove(wc)
	wc.stopExpiry()
	wc.sess.Release()
	wc.done()
}

// read reads and serves messages until the connection ends, and returns
// the close code it should end with; or until a polled socket would block
// between messages (park).
func (wc *wsConn) read() (code msg.CloseCode, reason string, park bool) {
	ctx := context.Background() // the conn's life bounds reads, not a ctx
	for {
		typ, rd, err := wc.c.Reader(ctx)
		if errors.Is(err, errWouldBlock) {
			return 0, "", true
		}
		if err != nil {
			code, reason := wc.readError(err)
			return code, reason, false
		}
		wc.alive.Store(true)
		if typ == websocket.MessageBinary && !wc.echo {
			return msg.CloseUnsupported, "binary frames are not part of the protocol: send JSON text", false
		}
		// A buffer per message, from a pool: an idle connection holds none.
		buf := wsReadPool.Get().(*[]byte)
		b, code, reason := wc.readMessage(rd, typ == websocket.MessageText, (*buf)[:0])
		*buf = b[:0]
		code, reason = wc.handle(typ, b, code, reason)
		if cap(*buf) <= wsMaxCork {
			wsReadPool.Put(buf)
		}
		if code != 0 {
			return code, reason, false
		}
	}
}

var wsReadPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// handle serves one message read into b (valid until it returns), unless
// reading it failed with code.
func (wc *wsConn) handle(typ websocket.MessageType, b []byte, code msg.CloseCode, reason string) (msg.CloseCode, string) {
	{
		if code != 0 {
			return code, reason
		}
		if wc.echo {
			out := make([]byte, 1+len(b))
			out[0] = byte(typ)
			copy(out[1:], b)
			wc.repliesIn.Add(1)
			if wc.sess.Send(out) != nil {
				return msg.CloseNormal, "" // closed already; its code stands
			}
			wc.expedite()
			return 0, ""
		}
		code, reason := wc.serve(b)
		wc.expedite()
		return code, reason
	}
}

// readMessage reads one message into buf, checking text as it arrives so
// invalid UTF-8 is refused at the frame that brings it.
func (wc *wsConn) readMessage(rd io.Reader, text bool, buf []byte) ([]byte, msg.CloseCode, string) {
	checked := 0
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if text && n > 0 {
			k, ok := validUTF8Prefix(buf[checked:])
			if !ok {
				return buf, msg.CloseInvalidPayload, "text frame is not valid UTF-8"
			}
			checked += k
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			code, reason := wc.readError(err)
			return buf, code, reason
		}
	}
	if text && checked != len(buf) {
		return buf, msg.CloseInvalidPayload, "text message ends inside a UTF-8 sequence"
	}
	return buf, 0, ""
}

// validUTF8Prefix checks b, allowing it to end inside a sequence that later
// bytes may complete, and returns how many bytes it validated.
func validUTF8Prefix(b []byte) (int, bool) {
	end := len(b)
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				end = i
			}
			break
		}
	}
	if !utf8.Valid(b[:end]) {
		return 0, false
	}
	return end, true
}

// readError maps a read failure to how the connection ends.
func (wc *wsConn) readError(err error) (msg.CloseCode, string) {
	switch {
	case websocket.CloseStatus(err) != -1:
		// The peer closed; the library answered.
		return msg.CloseNormal, ""
	case errors.Is(err, errBadCloseReason):
		return msg.CloseInvalidPayload, "close reason is not valid UTF-8"
	case errors.Is(err, websocket.ErrMessageTooBig):
		return msg.CloseTooBig, "frame larger than " + strconv.FormatInt(wc.limit, 10) + " bytes"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), isNetError(err):
		wc.dropped.Store(true)
		return msg.CloseNormal, ""
	}
	// A protocol violation (the library has sent 1002 for most; for an
	// unmasked frame it has not).
	return msg.CloseProtocol, "protocol error"
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// serve runs one command. It returns a close code only when the
// connection must end.
func (wc *wsConn) serve(b []byte) (msg.CloseCode, string) {
	cmd, err := parseWSCommand(b)
	if errors.Is(err, errNotObject) {
		return msg.CloseUnsupported, "text frame is not a JSON object"
	}
	var reply []byte
	if err == nil {
		reply, err = wc.run1(wc.ctx, cmd)
	}
	if err != nil {
		reply = wsError(cmd.ID, err)
	}
	if reply != nil {
		wc.repliesIn.Add(1)
	}
	if reply != nil && wc.sess.Send(reply) != nil {
		// The session closed (its first code stands): stop reading.
		return msg.CloseNormal, ""
	}
	return 0, ""
}

// run1 serves a decoded command and returns its reply (nil when the reply
// was queued already) or an error for the error reply.
func (wc *wsConn) run1(ctx context.Context, cmd wsCommand) ([]byte, error) {
	h := wc.s.hub
	switch cmd.Type {
	case wsPing:
		return wsPong(cmd.ID), nil
	case wsSubscribe:
		if err := wc.s.authorize(ctx, ActionSubscribe, cmd.Channel); err != nil && msg.ValidChannel(cmd.Channel) {
			return nil, err
		}
		opts := hub.SubscribeOptions{Ack: func(r hub.SubscribeResult) []byte {
			wc.repliesIn.Add(1) // queued next, ahead of the replay
			return wsPosition(cmd.ID, r.Channel, r.Epoch, r.Offset, 0, false)
		}}
		if err := wc.presenceOptions(ctx, &opts, cmd); err != nil {
			return nil, err
		}
		if cmd.Offset != nil {
			pos := msg.Position{Offset: *cmd.Offset}
			if cmd.Epoch != nil {
				pos.Epoch = *cmd.Epoch
			}
			opts.From = &pos
		}
		_, err := wc.sess.Subscribe(ctx, cmd.Channel, opts)
		return nil, err
	case wsUnsubscribe:
		if !msg.ValidChannel(cmd.Channel) {
			return nil, invalidChannel(cmd.Channel)
		}
		if err := wc.sess.Unsubscribe(ctx, cmd.Channel); err != nil {
			return nil, err
		}
		return wsOK(cmd.ID), nil
	case wsPublish:
		if !msg.ValidChannel(cmd.Channel) {
			return nil, invalidChannel(cmd.Channel)
		}
		if err := wc.s.authorize(ctx, ActionPublish, cmd.Channel); err != nil {
			return nil, err
		}
		if !wc.bucket.allow(time.Now()) {
			return nil, msg.Errorf(msg.CodeRateLimited, "more than %g publishes per second on this connection", wc.bucket.rate)
		}
		p, err := h.Publish(ctx, cmd.Channel, cmd.Data)
		if err != nil {
			return nil, err
		}
		return wsPosition(cmd.ID, p.Channel, p.Epoch, p.Offset, p.Time, true), nil
	case wsHistory:
		return wc.history(ctx, cmd)
	case wsPresence, wsPresenceStats:
		return wc.presence(ctx, cmd)
	}
	return nil, msg.Errorf(msg.CodeBadRequest, "unknown type %q", truncate(cmd.Type))
}

func (wc *wsConn) history(ctx context.Context, cmd wsCommand) ([]byte, error) {
	var after uint64
	if cmd.After != nil {
		after = *cmd.After
	}
	limit := defaultHistoryLimit
	if cmd.Limit != nil {
		limit = *cmd.Limit
	}
	if !msg.ValidChannel(cmd.Channel) {
		return nil, invalidChannel(cmd.Channel)
	}
	if err := wc.s.authorize(ctx, ActionSubscribe, cmd.Channel); err != nil {
		return nil, err
	}
	st, pubs, err := wc.s.hub.History(ctx, cmd.Channel, after, limit)
	if err != nil {
		return nil, err
	}
	b := wsReplyStart(make([]byte, 0, 256), cmd.ID, "ok")
	b = append(b, `,"channel":"`...)
	b = append(b, cmd.Channel...)
	b = append(b, `","epoch":"`...)
	b = append(b, st.Epoch...)
	b = append(b, `","messages":[`...)
	next := after
	for i, p := range pubs {
		if i > 0 && len(b)+len(p.JSON) > wsHistoryBytes {
			break
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.JSON...)
		next = p.Offset
	}
	b = append(b, `],"next":`...)
	b = strconv.AppendUint(b, next, 10)
	b = append(b, `,"oldest":`...)
	b = strconv.AppendUint(b, st.Oldest, 10)
	b = append(b, `,"latest":`...)
	b = strconv.AppendUint(b, st.Latest, 10)
	return append(b, '}'), nil
}

// close ends the connection for the session's close error.
func (wc *wsConn) close(err error) {
	code := msg.CloseCodeOf(err)
	if wc.dropped.Load() || code == 0 {
		wc.c.CloseNow()
		return
	}
	var reason string
	var ce *msg.CloseError
	if errors.As(err, &ce) {
		reason = ce.Reason
	}
	wc.c.Close(websocket.StatusCode(code), closeReason(reason))
}

// closeReason fits reason into a close frame (123 bytes), on a rune
// boundary.
func closeReason(reason string) string {
	const max = 123
	if len(reason) <= max {
		return reason
	}
	i := max
	for i > 0 && !utf8.RuneStart(reason[i]) {
		i--
	}
	return reason[:i]
}

// tokenBucket limits a rate with bursts; the zero value allows everything.
type tokenBucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func (b *tokenBucket) allow(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
