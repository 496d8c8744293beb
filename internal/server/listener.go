package server

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// The connection cap answers instead of queueing.
//
// A listener that stops accepting at its cap (netutil.LimitListener)
// leaves further clients in the kernel's accept queue: they connect, send
// their request and hear nothing until a slot frees, which under a flood
// of slow clients is never. capListener keeps accepting; a connection over
// the cap is handed to a refusal, which waits briefly for the request to
// arrive (so an HTTP client that has not yet written it does not take the
// answer for an unsolicited one), writes a canned 503 unavailable with
// Retry-After, half-closes, reads what the client still sends for a moment
// (closing with unread data would reset the connection and could destroy
// the answer in the client's receive buffer) and closes. At most
// maxRefusals run at once; beyond that a connection is closed at once.

const (
	// maxRefusals bounds the refusals in flight: a flood past the cap
	// costs at most this many goroutines and buffers.
	maxRefusals = 128
	// refuseRequestWait is how long a refusal waits for the first bytes
	// of the request before it answers anyway.
	refuseRequestWait = 200 * time.Millisecond
	// refuseWriteTimeout bounds writing the answer.
	refuseWriteTimeout = time.Second
	// refuseDrain is how long a refusal reads after its half-close, and
	// refuseDrainBytes the most it reads.
	refuseDrain      = 500 * time.Millisecond
	refuseDrainBytes = 64 << 10
	// refuseRetryAfter is the Retry-After of the answer, in seconds.
	refuseRetryAfter = 1
)

// busyResponse is the whole HTTP answer of a refusal.
var busyResponse = func() []byte {
	body, err := json.Marshal(msg.ErrorBody{Error: msg.Errorf(msg.CodeUnavailable,
		"the hub is serving as many connections as it may (--max-connections); retry later")})
	if err != nil {
		panic(err)
	}
	body = append(body, '\n')
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\n"+
		"Content-Type: application/json\r\n"+
		"Cache-Control: no-store\r\n"+
		"Retry-After: %d\r\n"+
		"Connection: close\r\n"+
		"Content-Length: %d\r\n\r\n%s", refuseRetryAfter, len(body), body)
}()

// capListener counts the connections it has accepted that are not yet
// closed and refuses those over limit; see the top of this file. Accept and
// Close may be called from any goroutine.
type capListener struct {
	net.Listener
	limit int64
	live  atomic.Int64 // accepted connections not yet closed
	// tls, when set, is what refusals handshake with before answering
	// (the server speaks TLS; see tls.go). Set before the first Accept.
	tls *tls.Config

	mu       sync.Mutex // guards refusing, closed
	refusing map[net.Conn]struct{}
	closed   bool
	refusals sync.WaitGroup // the running refusals, waited for by Close
}

func newCapListener(ln net.Listener, limit int) *capListener {
	return &capListener{Listener: ln, limit: int64(limit), refusing: make(map[net.Conn]struct{})}
}

// Accept returns the next connection within the cap, refusing those over
// it meanwhile.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.live.Add(1) <= l.limit {
			return &cappedConn{Conn: c, l: l}, nil
		}
		l.live.Add(-1)
		l.refuse(c)
	}
}

// Close closes the listener, cuts the refusals short and waits for them.
func (l *capListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	l.closed = true
	for c := range l.refusing {
		c.SetDeadline(aLongTimeAgo)
	}
	l.mu.Unlock()
	l.refusals.Wait()
	return err
}

// aLongTimeAgo is a deadline that has passed: setting it fails pending I/O.
var aLongTimeAgo = time.Unix(1, 0)

// refuse starts a refusal of c, or closes c when maxRefusals run already
// or the listener is closed.
func (l *capListener) refuse(c net.Conn) {
	l.mu.Lock()
	if l.closed || len(l.refusing) >= maxRefusals {
		l.mu.Unlock()
		c.Close()
		return
	}
	l.refusing[c] = struct{}{}
	l.refusals.Add(1)
	l.mu.Unlock()
	r := refusal{l: l, c: c, rw: c}
	if l.tls != nil {
		r.rw = tls.Server(c, l.tls)
	}
	go r.run()
}

// refusal answers one connection over the cap with busyResponse.
type refusal struct {
	l  *capListener
	c  net.Conn // the TCP connection: deadlines, Close
	rw net.Conn // what the answer goes through: c, or TLS over it
}

func (r refusal) run() {
	defer r.l.refusals.Done()
	defer r.c.Close()
	defer func() {
		r.l.mu.Lock()
		delete(r.l.refusing, r.c)
		r.l.mu.Unlock()
	}()
	buf := make([]byte, 4096)
	if !r.deadline(refuseRequestWait) {
		return
	}
	r.rw.Read(buf) // the request's first bytes (and a TLS handshake), or nothing in time
	if !r.deadline(refuseWriteTimeout) {
		return
	}
	if _, err := r.rw.Write(busyResponse); err != nil {
		return
	}
	if cw, ok := r.rw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if !r.deadline(refuseDrain) {
		return
	}
	for read := 0; read < refuseDrainBytes; {
		n, err := r.rw.Read(buf)
		read += n
		if err != nil {
			return
		}
	}
}

// deadline sets c's deadline d from now, unless the listener has closed
// (which set it in the past): it reports whether to go on.
func (r refusal) deadline(d time.Duration) bool {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	if r.l.closed {
		return false
	}
	r.c.SetDeadline(time.Now().Add(d))
	return true
}

// cappedConn is a connection within the cap; closing it frees its slot.
// NetConn tells socketOf (ws_poll_linux.go) the socket under it.
type cappedConn struct {
	net.Conn
	l      *capListener
	closed atomic.Bool
}

// Close frees the slot before closing, so that a client that sees this
// connection end can connect again at once without being refused.
func (c *cappedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.live.Add(-1)
	}
	return c.Conn.Close()
}

// NetConn returns the connection c wraps, as crypto/tls.Conn.NetConn does.
func (c *cappedConn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the connection when the one underneath can:
// net/http sends a response's FIN with it before closing a connection
// that still has unread request bytes, so the client reads the response
// rather than a reset.
func (c *cappedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
