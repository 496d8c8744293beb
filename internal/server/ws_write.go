package server

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"sync"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// Writing to WebSocket connections.
//
// The library writes only control frames it answers by itself (pong,
// close); the hub frames its own data frames and pings. A connection with
// something to write — its session's notify hook fired, or a ping is due —
// goes on its server's ready list, and a few writer goroutines (one per
// CPU) take connections off it: each takes what the session holds, frames
// it into the writer's buffer (a publication is already JSON: its frame is
// a 2–10 byte header and a copy) and sends it with one non-blocking
// write(2). A fan-out of one publication to many connections therefore
// starts no goroutine and takes no timer. Only when a socket would block
// does its connection get a goroutine of its own (drainBlocking), which
// writes the rest under the write timeout and then carries on until the
// session is empty.
//
// Write batching (write_budget.go): a writer writes what a connection has
// queued as soon as it takes the connection, so what arrives while a write
// is in flight, or while the connection waits its turn on the ready list,
// shares the next write. Only while the hub is over its write budget does a
// connection already written to in the current window, with something new,
// wait on the later list until the window ends (the writers' one timer,
// armed while the list is not empty). Close frames and replies to the
// connection's own commands are never held: a connection with a reply
// queued and not yet written is not put on the later list, and the reader
// expedites it off the list once it has queued one, so a client waiting
// for an acknowledgement waits for no timer (Nagle's algorithm with
// delayed ACKs is the cautionary tale).

// wsWriters are a server's writer goroutines and their lists. They run
// while WebSocket connections are open (see wsState.add and remove).
type wsWriters struct {
	budget *writeBudget // nil: nothing is held

	mu    sync.Mutex // guards ready, head, later and armed
	ready []*wsConn  // ready[head:] wait for a writer
	head  int
	later []*wsConn
	// timer moves later to ready at the end of the budget's window in
	// which the first of them was held; armed while it is set.
	timer *time.Timer
	armed bool

	wake chan struct{} // a token: the ready list may have work
	stop chan struct{}
}

// wsWriteBatch is how many connections a writer takes off the ready list
// at a time; the others stay for the other writers.
const wsWriteBatch = 64

func startWSWriters(budget *writeBudget, end func()) *wsWriters {
	w := &wsWriters{budget: budget, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	if budget != nil {
		w.timer = time.AfterFunc(time.Hour, w.endHold)
		w.timer.Stop()
	}
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(w.run)
	}
	go func() {
		wg.Wait()
		end()
	}()
	return w
}

// close stops the writers. Nothing is on their lists: it is called when the
// last connection has gone.
func (w *wsWriters) close() {
	if w.timer != nil {
		w.timer.Stop()
	}
	close(w.stop)
}

// schedule puts wc, which has something to write and no writer, on a list:
// later if the budget holds it (written to in this window, the hub over
// budget), ready otherwise.
func (w *wsWriters) schedule(wc *wsConn) {
	w.mu.Lock()
	// Under mu, the timer cannot fire between the check and the append:
	// wc on later is moved when it fires, within one window (at most
	// --write-delay).
	if hold := w.budget.hold(wc.wrote.Load()); hold > 0 && !wc.urgent() {
		wc.laterAt = len(w.later)
		w.later = append(w.later, wc)
		if !w.armed {
			w.armed = true
			w.timer.Reset(hold)
		}
		w.mu.Unlock()
		return
	}
	w.ready = append(w.ready, wc)
	w.mu.Unlock()
	w.signal()
}

// urgent reports whether wc has something that is never held: a reply not
// yet written, or (its session closed) the close frame.
func (wc *wsConn) urgent() bool {
	return wc.repliesOut.Load() != wc.repliesIn.Load() || wc.closing()
}

// closing reports whether wc's session has closed.
func (wc *wsConn) closing() bool {
	select {
	case <-wc.sess.Done():
		return true
	default:
		return false
	}
}

// expedite moves wc from the later list to the ready list, if it is there.
func (w *wsWriters) expedite(wc *wsConn) {
	if w.budget == nil {
		return
	}
	w.mu.Lock()
	i := wc.laterAt
	if i < 0 || i >= len(w.later) || w.later[i] != wc {
		w.mu.Unlock()
		return
	}
	last := len(w.later) - 1
	w.later[i] = w.later[last]
	w.later[i].laterAt = i
	w.later[last] = nil
	w.later = w.later[:last]
	wc.laterAt = -1
	w.ready = append(w.ready, wc)
	w.mu.Unlock()
	w.signal()
}

// wrote records a write to wc, and the budget's window it was made in.
func (w *wsWriters) wrote(wc *wsConn) {
	if w.budget != nil {
		wc.wrote.Store(w.budget.wrote())
	}
}

// endHold moves the later list to the ready list: the window they were
// held in has ended.
func (w *wsWriters) endHold() {
	w.mu.Lock()
	w.armed = false
	for _, wc := range w.later {
		wc.laterAt = -1
	}
	w.ready = append(w.ready, w.later...)
	clear(w.later)
	w.later = w.later[:0]
	w.mu.Unlock()
	w.signal()
}

func (w *wsWriters) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run is one writer.
func (w *wsWriters) run() {
	buf := make([]byte, 0, 16<<10)
	var batch []*wsConn
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
		}
		for {
			w.mu.Lock()
			n := min(len(w.ready)-w.head, wsWriteBatch)
			batch = append(batch[:0], w.ready[w.head:w.head+n]...)
			clear(w.ready[w.head : w.head+n])
			w.head += n
			more := w.head < len(w.ready)
			switch {
			case !more:
				w.ready, w.head = w.ready[:0], 0
			case w.head >= 1024 && w.head > len(w.ready)/2:
				// A list never empty would grow for ever: move what is
				// left to the front (amortised, as append's copies).
				k := copy(w.ready, w.ready[w.head:])
				clear(w.ready[k:])
				w.ready, w.head = w.ready[:k], 0
			}
			w.mu.Unlock()
			if n == 0 {
				break
			}
			if more {
				w.signal() // another writer may help
			}
			for _, wc := range batch {
				wc.drain(&buf, false)
			}
			clear(batch)
			if cap(buf) > 4*wsMaxCork {
				buf = make([]byte, 0, 16<<10) // after a large message
			}
		}
	}
}

// wsPingFrame is the ping the hub sends: no payload.
var wsPingFrame = []byte{0x80 | 0x9, 0}

// drain writes what wc's session holds, and a due ping, until there is
// nothing left. A writer (blocking false) hands the connection to a
// goroutine of its own when its socket would block; that goroutine
// (blocking true) writes under the write timeout. The drain that finds the
// session closed has the close frame sent and the connection finished;
// writing stays set after it, so no writer runs again.
func (wc *wsConn) drain(buf *[]byte, blocking bool) {
	for {
		items, err := wc.sess.TryNext()
		if err != nil {
			wc.end(err, blocking)
			return
		}
		ping := wc.pingDue.Swap(false)
		if len(items) == 0 && !ping {
			if !wc.release() {
				return
			}
			continue
		}
		if !wc.writeItems(buf, ping, items, blocking) {
			return
		}
		if !blocking && wc.w != nil && wc.w.budget.holding() {
			// Over budget: what came during this write goes back to
			// the lists (held till the window's end, unless a reply
			// expedites it) rather than taking a write of its own now.
			// Otherwise the loop writes it at once: batching from load.
			if wc.release() {
				wc.w.schedule(wc)
			}
			return
		}
	}
}

// release gives up the connection's write side (writing). Something
// queued, a close or a ping asked for between the last TryNext and the
// release found writing set and scheduled nothing: release then takes the
// write side back, unless another writer already has, and reports true —
// the caller must see to it.
func (wc *wsConn) release() bool {
	// What was written stops counting in the hub's total; this must come
	// before another writer may take the session's next batch.
	wc.sess.Written()
	wc.writing.Store(false)
	if !wc.sess.Pending() && !wc.pingDue.Load() {
		return false
	}
	return wc.writing.CompareAndSwap(false, true)
}

// writeItems frames items (after a ping, if ping) and writes them, at most
// wsMaxCork bytes per write. It reports false when this writer is done
// with the connection: handed over to a goroutine, or failed and ending.
func (wc *wsConn) writeItems(buf *[]byte, ping bool, items []hub.Item, blocking bool) bool {
	for ping || len(items) > 0 {
		b := (*buf)[:0]
		if ping {
			b = append(b, wsPingFrame...)
			ping = false
		}
		replies := 0
		for len(items) > 0 && len(b) < wsMaxCork {
			if items[0].Raw != nil {
				replies++
			}
			b = wc.appendFrame(b, items[0])
			items = items[1:]
		}
		*buf = b[:0]
		n, err := wc.nc.writeFrames(b, blocking, wc.s.cfg.WriteTimeout)
		if err == errWouldBlock {
			go wc.drainBlocking(bytes.Clone(b[n:]), items)
			return false
		}
		if err != nil {
			wc.writeFailed(err, blocking)
			return false
		}
		wc.repliesOut.Add(uint64(replies))
		if wc.w != nil {
			wc.w.wrote(wc)
		}
	}
	return true
}

// drainBlocking takes over a connection whose socket would block: it writes
// rest, then items, then drains the session, each write under the write
// timeout. A peer that takes nothing for that long is dropped.
func (wc *wsConn) drainBlocking(rest []byte, items []hub.Item) {
	if _, err := wc.nc.writeFrames(rest, true, wc.s.cfg.WriteTimeout); err != nil {
		wc.writeFailed(err, true)
		return
	}
	b := getBuf()
	defer func() { putBuf(b) }()
	if wc.writeItems(&b, false, items, true) {
		wc.drain(&b, true)
	}
}

// wsMaxCork is the most one write carries (unless one frame is larger), so
// a batch costs bounded memory whatever is queued.
const wsMaxCork = 64 << 10

func (wc *wsConn) writeFailed(err error, blocking bool) {
	wc.s.log.Debug("websocket write failed", "err", err)
	wc.dropped.Store(true)
	wc.sess.Close(msg.CloseNormal, "write failed")
	wc.end(nil, blocking)
}

// end finishes the connection: right here in a goroutine of its own, in a
// goroutine of its own otherwise (a writer must not wait for a close
// handshake).
func (wc *wsConn) end(err error, blocking bool) {
	if blocking {
		wc.finish(err)
		return
	}
	go wc.finish(err)
}

// appendFrame appends it as one WebSocket frame.
func (wc *wsConn) appendFrame(b []byte, it hub.Item) []byte {
	switch {
	case it.Pub != nil:
		if wc.compresses(len(it.Pub.JSON)) {
			// Once per publication, for every connection that takes it.
			if z := it.Pub.Compressed(wc.s.ws.compress); z != nil {
				return appendWSFrame(b, wsOpText|wsRSV1, z)
			}
		}
		return appendWSFrame(b, wsOpText, it.Pub.JSON)
	case it.Gap != nil:
		return appendWSFrame(b, wsOpText, it.Gap.AppendJSON(nil))
	case it.Event != nil:
		return appendWSFrame(b, wsOpText, it.Event.JSON)
	case wc.echo:
		return appendWSFrame(b, it.Raw[0], it.Raw[1:])
	}
	return appendWSFrame(b, wsOpText, it.Raw)
}

// wsOpText is the text frame's opcode (RFC 6455 §5.2). Echo items carry
// theirs: the library's MessageText and MessageBinary are the opcodes.
const wsOpText = 0x1

// wsRSV1 marks a compressed message's first frame (RFC 7692 §6); it sits
// beside the opcode in a frame's first byte.
const wsRSV1 = 0x40

// appendWSFrame appends a final, unmasked (server-to-client) frame.
func appendWSFrame(b []byte, op byte, p []byte) []byte {
	b = append(b, 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, p...)
}
