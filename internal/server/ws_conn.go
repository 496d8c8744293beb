package server

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// wsNetConn is the hijacked TCP connection under a WebSocket, as the
// WebSocket library sees it. The library writes its control frames (pong,
// close) through Write; the hub writes its data frames and pings with
// writeFrames (ws_write.go). mu keeps the two in order.
type wsNetConn struct {
	net.Conn

	// pre holds bytes read from the connection before the hijack; Read
	// returns them first. Only the reading goroutine touches it.
	pre []byte
	// scan watches the client's close frames; scanErr, once set, fails
	// every read. Only the reading goroutine touches them.
	scan    closeScan
	scanErr error
	// polled is set when an epoll loop wakes this connection's reader
	// (ws_poll_linux.go): Read then returns errWouldBlock, instead of
	// blocking, when nothing is there and the library is between
	// messages. Set before the first read; blocking, set when the
	// connection closes, turns that off for the close handshake.
	polled   bool
	blocking atomic.Bool
	raw      syscall.RawConn // for tryRead; set with polled

	mu        sync.Mutex // orders writes; guards closeSent
	closeSent bool       // the library has written a close frame
}

func (c *wsNetConn) Read(p []byte) (int, error) {
	if c.scanErr != nil {
		return 0, c.scanErr
	}
	var n int
	var err error
	if len(c.pre) > 0 {
		n = copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
	} else if c.polled && !c.blocking.Load() && c.scan.atBoundary() {
		n, err = c.tryRead(p)
		if err == errWouldBlock {
			return 0, err
		}
	} else {
		n, err = c.Conn.Read(p)
	}
	if !c.scan.scan(p[:n]) {
		// Withhold the whole read: the connection fails with 1007.
		c.scanErr = errBadCloseReason
		return 0, c.scanErr
	}
	return n, err
}

// errWouldBlock is what a polled connection's Read returns when there is
// nothing to read between two messages: the reader parks and the epoll loop
// wakes it when there is.
var errWouldBlock = errors.New("websocket: would block")

func (c *wsNetConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// The library writes each control frame whole, in one Write: a close
	// frame starts with its first byte. Nothing may follow it.
	if len(p) > 0 && p[0] == 0x80|0x8 {
		c.closeSent = true
	}
	return c.Conn.Write(p)
}

// writeFrames writes b, whole frames, after whatever was written before.
// Blocking, it waits up to timeout. Otherwise it makes one attempt that
// never waits and returns errWouldBlock, with how much it wrote, when the
// socket cannot take all of b (or cannot be written without waiting on
// this system).
func (c *wsNetConn) writeFrames(b []byte, blocking bool, timeout time.Duration) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeSent {
		return 0, net.ErrClosed
	}
	if !blocking {
		return c.tryWrite(b)
	}
	c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	n, err := c.Conn.Write(b)
	c.Conn.SetWriteDeadline(time.Time{})
	return n, err
}
