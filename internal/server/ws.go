package server

import (
	"context"
	"errors"
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
//
// One concern a file:
//
//	ws_accept.go     upgrade checks, the connection cap, the handshake
//	ws.go            connection state: wsConn, wsState, start, the hand-off
//	                 to the writers (notify, schedule), finish and close
//	ws_read.go       the read path: readLoop, messages, UTF-8, read errors
//	ws_command.go    the /v1/ws commands and the publish rate limit
//	ws_write.go      the writers: data frames, pings, coalescing
//	ws_pinger.go     the ping sweep and the silent-peer drop
//	ws_conn.go       the socket under the library (wsNetConn): ordered
//	                 writes, would-block reads
//	ws_closescan.go  the client close-frame scanner
//	ws_poll_linux.go the epoll loop that wakes parked readers
//	ws_deflate.go    permessage-deflate (RFC 7692)
//
// The lock order is in the package doc (doc.go). What the code assumes
// of github.com/coder/websocket is pinned by ws_library_test.go.
//
// Per-connection flags (wsConn, and wsNetConn as nc), who sets and clears
// them:
//
//	flag          set by                         cleared by                 while set
//	writing       notify, sweep (CAS from false) the drain that empties     on a writer list or draining;
//	                                             the session (ws_write.go)  stays set once closed
//	pingDue       sweep                          the drain writing the ping the next drain pings first
//	reading       start, the poller (CAS)        readLoop parking           a reader goroutine runs
//	alive         start, any frame, a pong       each sweep (Swap)          the peer showed itself
//	dropped       readError (EOF, net), sweep,   never                      TCP is gone: no close frame
//	              a write timeout
//	nc.polled     start (wsState.add)            never                      reads may park (errWouldBlock)
//	nc.blocking   finish                         never                      the close handshake reads block
//	nc.closeSent  the library's close frame      never                      no data frame may follow
//	              (wsNetConn.Write)

// wsCloseWait bounds the close handshake (the peer's close frame after
// ours); wsProtocolErrorWait is that after a protocol error.
const (
	wsCloseWait         = 5 * time.Second
	wsProtocolErrorWait = time.Second
)

// wsState is a server's WebSocket bookkeeping: the connection count (for
// the cap), and the live connections with the goroutine that pings them.
type wsState struct {
	conns atomic.Int64
	// compressions counts messages compressed (publications, once each,
	// and echoes); compress is deflate as a func value made once, for
	// hub.Publication.Compressed.
	compressions atomic.Uint64
	compress     func([]byte) []byte

	mu      sync.Mutex // guards live, stop, poller, writers, slot
	live    map[*wsConn]struct{}
	stop    chan struct{} // closed to stop the running sweeper; nil if none
	poller  *wsPoller     // wakes idle readers (Linux); nil if none runs
	writers *wsWriters    // nil if none run
	slot    int           // the ping slot of the next connection
}

// deflate compresses one message, counting it.
func (st *wsState) deflate(p []byte) []byte {
	st.compressions.Add(1)
	return deflateMessage(p)
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
	// deflate is what the handshake agreed (ws_deflate.go); compressMin
	// the smallest message sent compressed.
	deflate     wsDeflate
	compressMin int

	ts *transportSession // the session's open/close sequence; closed by finish

	w     *wsWriters    // the server's writers, while the connection is live
	wrote atomic.Uint64 // the write budget's window of the last write (write_budget.go)
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
			st.writers = startWSWriters(wc.s.budget, end)
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
	wc.ts.close()
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
