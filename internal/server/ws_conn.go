package server

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"sync"
	"time"
)

// wsNetConn is the hijacked TCP connection under a WebSocket, as the
// WebSocket library sees it. It adds one thing: corking. While corked,
// writes are collected in a pooled buffer, and uncork sends them with one
// write under one deadline, so a writer with several messages waiting pays
// one system call, not one per message. Writes while not corked (the
// library's control frames: pong, close) pass straight through. mu keeps
// the two kinds in order.
type wsNetConn struct {
	net.Conn

	// pre holds bytes read from the connection before the hijack; Read
	// returns them first. Only the reading goroutine touches it.
	pre []byte

	mu     sync.Mutex // guards corked, buf, and orders writes
	corked bool
	buf    *[]byte
}

func (c *wsNetConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

var wsBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// wsMaxCork is the most a corked connection collects before the writer
// flushes, so one batch costs bounded memory whatever is queued.
const wsMaxCork = 64 << 10

func (c *wsNetConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		*c.buf = append(*c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// cork starts collecting writes.
func (c *wsNetConn) cork() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		c.buf = wsBufPool.Get().(*[]byte)
	}
	c.corked = true
}

// buffered returns how many bytes wait in the cork.
func (c *wsNetConn) buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buf == nil {
		return 0
	}
	return len(*c.buf)
}

// flush writes what the cork holds, within timeout. When uncork is true
// the connection stops collecting and gives its buffer back to the pool.
func (c *wsNetConn) flush(timeout time.Duration, uncork bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if c.buf != nil && len(*c.buf) > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(timeout))
		_, err = c.Conn.Write(*c.buf)
		c.Conn.SetWriteDeadline(time.Time{})
		*c.buf = (*c.buf)[:0]
	}
	if uncork {
		c.corked = false
		if c.buf != nil {
			if cap(*c.buf) <= 2*wsMaxCork {
				wsBufPool.Put(c.buf)
			}
			c.buf = nil
		}
	}
	return err
}

// wsHijacker hands the WebSocket library a wsNetConn and small buffers
// instead of net/http's 4 KiB ones: an idle connection should cost little,
// and the library's frame reads and writes need no large buffer (payloads
// bigger than the buffer bypass it).
type wsHijacker struct {
	http.ResponseWriter
	nc *wsNetConn
}

// wsBufSize is the size of each connection's read and write buffer.
const wsBufSize = 512

func (h *wsHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Writer.Buffered() > 0 {
		if err := brw.Writer.Flush(); err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	h.nc = &wsNetConn{Conn: c}
	// Bytes the client sent right after its handshake may sit in net/http's
	// reader; the connection yields them first.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		h.nc.pre = bytes.Clone(b)
	}
	return h.nc, bufio.NewReadWriter(bufio.NewReaderSize(h.nc, wsBufSize), bufio.NewWriterSize(h.nc, wsBufSize)), nil
}

func (h *wsHijacker) Unwrap() http.ResponseWriter { return h.ResponseWriter }
