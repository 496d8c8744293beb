package bench

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
)

// This file holds the one place the suite sees raw bytes: a dialer whose
// connections count what crosses the socket. The transports themselves are
// spoken by the public client package (or net/http), which decodes the
// wire; only the counting needs the bytes, so it wraps the connection
// rather than decoding a second time.

// WireCount is what a [CountingDialer]'s connections carried, counted at
// the socket: every byte of TCP payload in each direction (HTTP headers,
// chunk framing, WebSocket framing, SSE field names included), the TCP
// connections opened (each one a handshake), and the HTTP requests
// written. Safe for concurrent use.
type WireCount struct {
	Dials    atomic.Int64 // TCP connections opened (SYN, SYN-ACK, ACK each)
	Requests atomic.Int64 // HTTP/1.x requests and WebSocket handshakes written
	Written  atomic.Int64 // bytes client → server
	Read     atomic.Int64 // bytes server → client
}

// WireTotals is a snapshot of a [WireCount].
type WireTotals struct {
	Dials, Requests, Written, Read int64
}

// Totals returns the counts so far.
func (w *WireCount) Totals() WireTotals {
	return WireTotals{Dials: w.Dials.Load(), Requests: w.Requests.Load(), Written: w.Written.Load(), Read: w.Read.Load()}
}

// Sub returns t minus o, for the counts of a window.
func (t WireTotals) Sub(o WireTotals) WireTotals {
	return WireTotals{Dials: t.Dials - o.Dials, Requests: t.Requests - o.Requests, Written: t.Written - o.Written, Read: t.Read - o.Read}
}

// CountingDialer dials TCP and counts what its connections carry into
// Count. Dial fits client.DialOptions.Dial and http.Transport.DialContext.
type CountingDialer struct {
	Count  *WireCount
	dialer net.Dialer
}

// NewCountingDialer returns a dialer counting into a fresh WireCount.
func NewCountingDialer() *CountingDialer {
	return &CountingDialer{Count: &WireCount{}}
}

// Dial opens a counted connection.
func (d *CountingDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.Count.Dials.Add(1)
	cc := &countingConn{Conn: c, count: d.Count}
	cc.atRequest.Store(true)
	return cc, nil
}

// countingConn counts one connection's bytes, and the HTTP requests
// written on it. A request is recognised by its request line at the start
// of a write that follows a read (net/http and the WebSocket handshake
// write a request's head in one buffered flush, and a client writes the
// next request on a connection only after it read the last response), so
// WebSocket frames, which follow the handshake's response, are never taken
// for requests: once upgraded, the conn stops looking.
type countingConn struct {
	net.Conn
	count *WireCount
	// atRequest is true when the next write may start a request: at the
	// start and after each read. Only the goroutine writing touches it
	// but for the reader's store, hence atomic.
	atRequest atomic.Bool
	upgraded  atomic.Bool
}

var httpMethods = [][]byte{[]byte("GET "), []byte("POST "), []byte("HEAD "), []byte("PUT "), []byte("DELETE "), []byte("OPTIONS "), []byte("CONNECT ")}

func (c *countingConn) Write(p []byte) (int, error) {
	if c.atRequest.Swap(false) && !c.upgraded.Load() {
		for _, m := range httpMethods {
			if bytes.HasPrefix(p, m) {
				c.count.Requests.Add(1)
				if bytes.Contains(p, []byte("\r\nUpgrade: websocket")) || bytes.Contains(p, []byte("\r\nupgrade: websocket")) {
					c.upgraded.Store(true)
				}
				break
			}
		}
	}
	n, err := c.Conn.Write(p)
	c.count.Written.Add(int64(n))
	return n, err
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.count.Read.Add(int64(n))
		c.atRequest.Store(true)
	}
	return n, err
}
