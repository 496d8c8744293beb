package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
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

// errBadCloseReason fails a connection whose peer sent a close frame with a
// reason that is not UTF-8 (RFC 6455 §8.1 and §5.5.1: answered with 1007).
var errBadCloseReason = errors.New("close frame reason is not valid UTF-8")

// closeScan follows the client's frames through the raw byte stream, ahead
// of the WebSocket library, to catch one thing the library lets through: a
// close frame whose reason is not valid UTF-8 (it would echo it back).
// It reads frame headers and counts payload bytes; only close payloads
// (at most 125 bytes) are kept. The reading goroutine owns it.
type closeScan struct {
	hdr     [14]byte
	hlen    int    // header bytes collected
	need    int    // header length, known once two bytes are in
	remain  uint64 // payload bytes left in the current frame
	inBody  bool
	isClose bool
	// midMessage is set between the frames of a fragmented data message.
	midMessage bool
	mask       [4]byte // zero for an unmasked frame (which the library refuses)
	pos        int     // payload position, for unmasking
	pay        []byte
}

// scan consumes p and reports false once a close frame with an invalid
// reason is complete.
func (s *closeScan) scan(p []byte) bool {
	for len(p) > 0 {
		if s.inBody {
			n := len(p)
			if uint64(n) > s.remain {
				n = int(s.remain)
			}
			if s.isClose {
				for _, b := range p[:n] {
					b ^= s.mask[s.pos%4]
					if len(s.pay) < 125 {
						s.pay = append(s.pay, b)
					}
					s.pos++
				}
			}
			p = p[n:]
			s.remain -= uint64(n)
			if s.remain == 0 {
				s.inBody = false
				if !s.closeOK() {
					return false
				}
			}
			continue
		}
		s.hdr[s.hlen] = p[0]
		s.hlen++
		p = p[1:]
		if s.hlen == 2 {
			s.need = 2
			switch s.hdr[1] & 0x7f {
			case 126:
				s.need += 2
			case 127:
				s.need += 8
			}
			if s.hdr[1]&0x80 != 0 {
				s.need += 4
			}
		}
		if s.hlen < 2 || s.hlen < s.need {
			continue
		}
		// A whole header.
		var length uint64
		switch l := s.hdr[1] & 0x7f; l {
		case 126:
			length = uint64(binary.BigEndian.Uint16(s.hdr[2:4]))
		case 127:
			length = binary.BigEndian.Uint64(s.hdr[2:10])
		default:
			length = uint64(l)
		}
		s.isClose = s.hdr[0]&0x0f == 0x8
		if op := s.hdr[0] & 0x0f; op <= 0x2 {
			s.midMessage = s.hdr[0]&0x80 == 0
		}
		s.hlen, s.pos, s.pay = 0, 0, s.pay[:0]
		if length == 0 {
			continue
		}
		s.mask = [4]byte{}
		if s.hdr[1]&0x80 != 0 {
			copy(s.mask[:], s.hdr[s.need-4:s.need])
		}
		s.inBody, s.remain = true, length
	}
	return true
}

// atBoundary reports whether the bytes scanned end between two messages.
func (s *closeScan) atBoundary() bool {
	return s.hlen == 0 && !s.inBody && !s.midMessage
}

func (s *closeScan) closeOK() bool {
	return !s.isClose || len(s.pay) <= 2 || utf8.Valid(s.pay[2:])
}

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

// wsHijacker hands the WebSocket library a wsNetConn and small buffers
// instead of net/http's 4 KiB ones: an idle connection should cost little,
// and the library's frame reads and writes need no large buffer (payloads
// bigger than the buffer bypass it).
type wsHijacker struct {
	http.ResponseWriter
	nc *wsNetConn
	// extensions is the Sec-WebSocket-Extensions answer (the library's
	// own would leave out what it does not know, server_max_window_bits).
	extensions string
}

// WriteHeader sends the handshake's answer with duplex's extensions.
func (h *wsHijacker) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		if h.extensions != "" {
			h.Header().Set("Sec-WebSocket-Extensions", h.extensions)
		} else {
			h.Header().Del("Sec-WebSocket-Extensions")
		}
	}
	h.ResponseWriter.WriteHeader(code)
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
