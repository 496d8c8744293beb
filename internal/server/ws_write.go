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
// With --ws-write-delay, a connection with something to write first waits
// on a later list for up to that delay (one timer for the whole list), so
// messages arriving meanwhile share its write: fewer system calls per
// message, for that much latency.

// wsWriters are a server's writer goroutines and their lists. They run
// while WebSocket connections are open (see wsState.add and remove).
type wsWriters struct {
	delay time.Duration

	mu    sync.Mutex // guards ready, later
	ready []*wsConn
	later []*wsConn
	timer *time.Timer // moves later to ready; armed while later is not empty

	wake chan struct{} // a token: the ready list may have work
	stop chan struct{}
}

// wsWriteBatch is how many connections a writer takes off the ready list
// at a time; the others stay for the other writers.
const wsWriteBatch = 64

func startWSWriters(delay time.Duration, end func()) *wsWriters {
	w := &wsWriters{delay: delay, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	if delay > 0 {
		w.timer = time.AfterFunc(time.Hour, w.flushLater)
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

// schedule puts wc, which has something to write and no writer, on a list.
func (w *wsWriters) schedule(wc *wsConn) {
	w.mu.Lock()
	if w.delay > 0 {
		w.later = append(w.later, wc)
		if len(w.later) == 1 {
			w.timer.Reset(w.delay)
		}
		w.mu.Unlock()
		return
	}
	w.ready = append(w.ready, wc)
	w.mu.Unlock()
	w.signal()
}

// flushLater moves the later list to the ready list.
func (w *wsWriters) flushLater() {
	w.mu.Lock()
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
			n := min(len(w.ready), wsWriteBatch)
			batch = append(batch[:0], w.ready[:n]...)
			k := copy(w.ready, w.ready[n:])
			clear(w.ready[k:])
			w.ready = w.ready[:k]
			w.mu.Unlock()
			if n == 0 {
				break
			}
			if k > 0 {
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
			wc.writing.Store(false)
			// Something queued (or a ping asked for) between TryNext and
			// the store found writing set and scheduled nothing: take it
			// on, unless another writer already has.
			if wc.sess.QueueLen() == 0 && wc.sess.Err() == nil && !wc.pingDue.Load() {
				return
			}
			if !wc.writing.CompareAndSwap(false, true) {
				return
			}
			continue
		}
		if !wc.writeItems(buf, ping, items, blocking) {
			return
		}
	}
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
		for len(items) > 0 && len(b) < wsMaxCork {
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
	bp := wsBufPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 4*wsMaxCork {
			*bp = (*bp)[:0]
			wsBufPool.Put(bp)
		}
	}()
	if wc.writeItems(bp, false, items, true) {
		wc.drain(bp, true)
	}
}

var wsBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

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
		return appendWSFrame(b, wsOpText, it.Pub.JSON)
	case it.Gap != nil:
		return appendWSFrame(b, wsOpText, it.Gap.AppendJSON(nil))
	case wc.echo:
		return appendWSFrame(b, it.Raw[0], it.Raw[1:])
	}
	return appendWSFrame(b, wsOpText, it.Raw)
}

// Data frame opcodes (RFC 6455 §5.2); the library's MessageText and
// MessageBinary have the same values.
const (
	wsOpText   = 0x1
	wsOpBinary = 0x2
)

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
