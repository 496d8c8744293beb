package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair returns the two ends of one loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	dialled, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-accepted
	if a == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { dialled.Close(); a.Close() })
	return dialled.(*net.TCPConn), a.(*net.TCPConn)
}

// drainPipePool empties the pipe pool, so a test can see that the splice
// loop took a pipe and gave it back.
func drainPipePool() {
	for {
		select {
		case p := <-pipePool:
			p.buffered = 1 // closes rather than pools
			p.release()
		default:
			return
		}
	}
}

type pumpResult struct {
	up, down int64
	err      error
}

// TestSpliceLoopExactBytesAndHalfClose sends a stream that is not a
// multiple of any pipe or chunk size through runPump over real sockets,
// half-closes, and checks every byte, the half-close passed on each way,
// the counts, and that the pipe went back to the pool empty.
func TestSpliceLoopExactBytesAndHalfClose(t *testing.T) {
	drainPipePool()
	client, clientSide := tcpPair(t) // user ↔ proxy
	dstSide, origin := tcpPair(t)    // proxy ↔ destination

	var totalUp, totalDown atomic.Int64
	done := make(chan pumpResult, 1)
	go func() {
		up, down, err := runPump(clientSide, dstSide, nil, nil, time.Minute, &totalUp, &totalDown)
		done <- pumpResult{up, down, err}
	}()

	upload := make([]byte, 3<<20+12345)
	for i := range upload {
		upload[i] = byte(rand.Uint32())
	}
	reply := bytes.Repeat([]byte("reply after the half-close "), 40000) // ~1 MiB

	originGot := make(chan [32]byte, 1)
	go func() {
		h := sha256.New()
		io.Copy(h, origin) // until the FIN the pump passed on
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		originGot <- sum
		origin.Write(reply) // the other way still open
		origin.CloseWrite()
	}()

	go func() {
		client.Write(upload)
		client.CloseWrite()
	}()
	got, err := io.ReadAll(client) // until the origin's FIN, passed on
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	if sum := <-originGot; sum != sha256.Sum256(upload) {
		t.Fatal("origin received different bytes than the client sent")
	}
	if !bytes.Equal(got, reply) {
		t.Fatalf("client got %d bytes of reply, want the %d sent", len(got), len(reply))
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("pump: %v", r.err)
	}
	if r.up != int64(len(upload)) || r.down != int64(len(reply)) {
		t.Fatalf("counts up %d down %d, want %d and %d", r.up, r.down, len(upload), len(reply))
	}
	if totalUp.Load() != r.up || totalDown.Load() != r.down {
		t.Fatalf("server-wide counters %d/%d, want %d/%d", totalUp.Load(), totalDown.Load(), r.up, r.down)
	}
	if len(pipePool) == 0 {
		t.Fatal("no pipe back in the pool: the splice loop did not run or kept its pipe")
	}
	for range len(pipePool) {
		p := <-pipePool
		if p.buffered != 0 {
			t.Fatalf("pooled pipe holds %d bytes", p.buffered)
		}
		p.release()
	}
}

// TestSpliceLoopPendingFirst checks that bytes read off the client with
// the request reach the destination before the spliced rest, in order.
func TestSpliceLoopPendingFirst(t *testing.T) {
	client, clientSide := tcpPair(t)
	dstSide, origin := tcpPair(t)
	done := make(chan pumpResult, 1)
	go func() {
		up, down, err := runPump(clientSide, dstSide, []byte("early "), nil, 0, nil, nil)
		done <- pumpResult{up, down, err}
	}()
	client.Write([]byte("late"))
	client.CloseWrite()
	got, _ := io.ReadAll(origin)
	if string(got) != "early late" {
		t.Fatalf("origin got %q", got)
	}
	origin.CloseWrite()
	io.ReadAll(client)
	if r := <-done; r.err != nil || r.up != int64(len("early late")) || r.down != 0 {
		t.Fatalf("pump: up %d down %d err %v", r.up, r.down, r.err)
	}
}

// TestSpliceLoopDestinationReset: a destination that resets mid-stream
// ends the tunnel with an error and closes the client's side.
func TestSpliceLoopDestinationReset(t *testing.T) {
	client, clientSide := tcpPair(t)
	dstSide, origin := tcpPair(t)
	done := make(chan pumpResult, 1)
	go func() {
		up, down, err := runPump(clientSide, dstSide, nil, nil, time.Minute, nil, nil)
		done <- pumpResult{up, down, err}
	}()
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := client.Write(chunk); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 1<<20)
	io.ReadAtLeast(origin, buf, len(buf)) // the stream is flowing
	origin.SetLinger(0)
	origin.Close() // RST
	r := <-done
	if r.err == nil {
		t.Fatal("pump ended cleanly after the destination reset")
	}
	if r.up < int64(len(buf)) {
		t.Fatalf("up count %d, below the %d the origin read", r.up, len(buf))
	}
	// The client's side was closed: its reads end.
	if _, err := io.ReadAll(client); err != nil && !isReadError(err) {
		t.Fatalf("client read after teardown: %v", err)
	}
}

// isReadError reports a socket error on read (a reset), which a torn-down
// tunnel may give its client instead of EOF.
func isReadError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "read"
}
