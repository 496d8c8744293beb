package server

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/duplexhq/duplex/msg"
)

// The read path of a WebSocket connection: readLoop (one goroutine while
// there is something to read; with epoll it parks when the socket would
// block between messages), one message at a time into a pooled buffer,
// UTF-8 checked as it arrives, and each message handed to the commands
// (ws_command.go) or queued back (echo). Read failures map to close codes
// here (readError).

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
			out := wc.echoItem(typ, b)
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

// echoItem is what the echo queues for message b: its opcode (with RSV1
// when compressed) and its payload.
func (wc *wsConn) echoItem(typ websocket.MessageType, b []byte) []byte {
	if wc.compresses(len(b)) {
		if z := wc.s.ws.deflate(b); z != nil {
			return append([]byte{byte(typ) | wsRSV1}, z...)
		}
	}
	out := make([]byte, 1+len(b))
	out[0] = byte(typ)
	copy(out[1:], b)
	return out
}

// compresses reports whether a message of n bytes goes compressed.
func (wc *wsConn) compresses(n int) bool {
	return n >= wc.compressMin && wc.deflate.fits(n)
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
