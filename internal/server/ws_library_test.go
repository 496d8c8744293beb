package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The contract with github.com/coder/websocket: what the WebSocket
// machinery assumes of the library, pinned against the version in go.mod,
// so that an upgrade that changes any of it fails here rather than in
// production.
//
//  1. The hijacked reader: Accept reads every frame through the
//     bufio.Reader of the ReadWriter that Hijack returns, which reads the
//     net.Conn Hijack returned (wsNetConn.Read, where the close-frame
//     scanner and the would-block live). Bytes net/http had buffered
//     before the hijack are ours to hand over (wsNetConn.pre).
//  2. Would-block: an error from that net.Conn's Read at the first byte of
//     a frame header (between messages) comes back from Conn.Reader
//     matching errors.Is, and does not break the connection: the next
//     Reader call reads on.
//  3. Whole control-frame writes: the library writes each control frame
//     (pong, close) whole in one Write, starting at its first byte,
//     through the bufio.Writer Hijack returned (of wsBufSize bytes);
//     wsNetConn.Write spots the close frame by that first byte.

// contractConn records the Writes the library makes, and fails one Read
// with errWouldBlock when asked to.
type contractConn struct {
	net.Conn
	blockNext atomic.Bool
	reads     atomic.Int64 // Read calls that returned bytes

	mu     sync.Mutex
	writes [][]byte
}

func (c *contractConn) Read(p []byte) (int, error) {
	if c.blockNext.Swap(false) {
		return 0, errWouldBlock
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

func (c *contractConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *contractConn) written() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.writes...)
}

// contractHijacker hands the library a contractConn the way wsHijacker
// hands it a wsNetConn: buffered bytes first, buffers of wsBufSize.
type contractHijacker struct {
	http.ResponseWriter
	conn *contractConn
}

func (h *contractHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	var pre []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		pre = bytes.Clone(b)
	}
	h.conn = &contractConn{Conn: &preConn{Conn: c, pre: pre}}
	return h.conn, bufio.NewReadWriter(bufio.NewReaderSize(h.conn, wsBufSize), bufio.NewWriterSize(h.conn, wsBufSize)), nil
}

// preConn yields pre before reading its Conn, as wsNetConn does.
type preConn struct {
	net.Conn
	pre []byte
}

func (c *preConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// clientFrame is a masked frame from a client.
func clientFrame(opcode byte, payload []byte) []byte {
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	default:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	}
	var key [4]byte
	rand.Read(key[:])
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// contractServer serves one WebSocket with the library, through a
// contractHijacker, and hands the test the connection.
func contractServer(t *testing.T) (addr string, conns <-chan *contractSide) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *contractSide, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj := &contractHijacker{ResponseWriter: w}
		c, err := websocket.Accept(hj, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		ch <- &contractSide{c: c, raw: hj.conn}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), ch
}

type contractSide struct {
	c   *websocket.Conn
	raw *contractConn
}

// contractDial opens a raw client connection and sends the handshake
// followed, in the same write, by first.
func contractDial(t *testing.T, addr string, first []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write(append([]byte(req), first...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return nc, br
}

func TestWSLibraryHijackedReaderAndWouldBlock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr, conns := contractServer(t)
	// The first message rides with the handshake: net/http buffers it,
	// the hijacker hands it over.
	nc, _ := contractDial(t, addr, clientFrame(0x1, []byte(`first`)))
	side := <-conns
	defer side.c.CloseNow()

	typ, b, err := side.c.Read(ctx)
	if err != nil || typ != websocket.MessageText || string(b) != "first" {
		t.Fatalf("first message (buffered before the hijack): %v %q %v", typ, b, err)
	}

	// Would-block between messages: Reader returns it, matching errors.Is.
	side.raw.blockNext.Store(true)
	if _, _, err := side.c.Reader(ctx); !errors.Is(err, errWouldBlock) {
		t.Fatalf("Reader after a would-block Read = %v, want errors.Is errWouldBlock", err)
	}
	// And the connection reads on, through the hijacked conn.
	before := side.raw.reads.Load()
	if _, err := nc.Write(clientFrame(0x1, []byte(`second`))); err != nil {
		t.Fatal(err)
	}
	typ, b, err = side.c.Read(ctx)
	if err != nil || string(b) != "second" {
		t.Fatalf("message after the would-block: %v %q %v", typ, b, err)
	}
	if side.raw.reads.Load() == before {
		t.Fatalf("the second message did not come through the hijacked conn's Read")
	}
}

func TestWSLibraryWholeControlFrameWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr, conns := contractServer(t)
	nc, br := contractDial(t, addr, nil)
	side := <-conns
	defer side.c.CloseNow()
	// A reader runs, as ours always does, to answer control frames.
	readDone := make(chan error, 1)
	go func() {
		_, _, err := side.c.Read(ctx)
		readDone <- err
	}()

	// The largest ping a client may send (125 bytes): its pong, whole.
	ping := []byte(strings.Repeat("p", 125))
	reason := strings.Repeat("r", 123) // the largest close reason
	closePayload := binary.BigEndian.AppendUint16(nil, uint16(websocket.StatusNormalClosure))
	closePayload = append(closePayload, reason...)
	if _, err := nc.Write(append(clientFrame(0x9, ping), clientFrame(0x8, closePayload)...)); err != nil {
		t.Fatal(err)
	}
	if err := <-readDone; websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("read ended with %v, want the peer's close", err)
	}
	// The client reads the pong and the close echo.
	io.ReadAll(io.LimitReader(br, 2+125+2+125))

	var pong, closeFrame []byte
	for _, w := range side.raw.written() {
		switch w[0] {
		case 0x80 | 0xA:
			pong = w
		case 0x80 | 0x8:
			closeFrame = w
		default:
			t.Errorf("a Write starts with %#x: not at a control frame's first byte", w[0])
		}
	}
	if want := append([]byte{0x8A, 125}, ping...); !bytes.Equal(pong, want) {
		t.Errorf("pong written as %q, want one whole frame %q", pong, want)
	}
	if len(closeFrame) != 2+2+123 || closeFrame[1] != 125 {
		t.Errorf("close frame written as %d bytes (%q), want one whole frame of 127", len(closeFrame), closeFrame)
	}
}
