package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// errIdle ends a tunnel that carried no bytes for the idle timeout.
var errIdle = errors.New("idle timeout")

// errStalled ends a tunnel whose receiver stopped reading for about the
// idle timeout.
var errStalled = errors.New("peer stopped reading")

// pump moves bytes both ways between a client and a destination
// connection. Each direction runs in its own goroutine; between bursts a
// direction waits for readability without holding a buffer or a splice
// pipe, so an idle tunnel costs two parked goroutines and two sockets.
type pump struct {
	// totalUp and totalDown are server-wide counters the pump adds to as
	// bytes move, so metrics follow long-lived tunnels; nil means none.
	totalUp, totalDown *atomic.Int64
	idle               time.Duration // <= 0: never
	window             time.Duration // deadline step, idle/4
	start              time.Time
	lastActive         atomic.Int64 // nanoseconds since start
	up, down           atomic.Int64 // bytes client→dst, dst→client
}

// runPump pumps until both directions are done, the first error closes both
// ends, and returns the first error that was not a clean EOF. clientPending
// and dstPending are bytes already read off the client or the destination
// that the other side still has to receive.
func runPump(client, dst net.Conn, clientPending, dstPending []byte, idle time.Duration, totalUp, totalDown *atomic.Int64) (up, down int64, err error) {
	p := &pump{idle: idle, start: time.Now(), totalUp: totalUp, totalDown: totalDown}
	if idle > 0 {
		p.window = idle / 4
	}
	client, clientPending = unwrapPrefix(client, clientPending)
	dst, dstPending = unwrapPrefix(dst, dstPending)
	errc := make(chan error, 2)
	go p.copy(client, dst, dstPending, counter{&p.down, p.totalDown}, errc)
	p.copy(dst, client, clientPending, counter{&p.up, p.totalUp}, errc)
	err = <-errc
	if err != nil {
		client.Close()
		dst.Close()
	}
	if err2 := <-errc; err == nil {
		err = err2
	}
	return p.up.Load(), p.down.Load(), err
}

// unwrapPrefix turns a prefixConn into its bytes plus the bare conn, so the
// bare conns can be spliced.
func unwrapPrefix(c net.Conn, pending []byte) (net.Conn, []byte) {
	if pc, ok := c.(*prefixConn); ok {
		return pc.Conn, append(append([]byte(nil), pending...), pc.prefix...)
	}
	return c, pending
}

func (p *pump) touch() { p.lastActive.Store(int64(time.Since(p.start))) }

// idleLongEnough reports whether the tunnel was silent long enough to close.
// Activity is only seen when a copy returns, at most one window late, so
// the tunnel has been silent for at least idle when this reports true.
func (p *pump) idleLongEnough() bool {
	return time.Since(p.start)-time.Duration(p.lastActive.Load()) >= p.idle+p.window
}

// copy moves src to dst until EOF (then half-closes dst) or an error, and
// sends the outcome to errc.
func (p *pump) copy(dst, src net.Conn, pending []byte, n counter, errc chan<- error) {
	errc <- p.copyLoop(dst, src, pending, n)
}

// counter counts one direction's bytes, per tunnel and server-wide.
type counter struct{ tunnel, total *atomic.Int64 }

func (c counter) Add(n int64) {
	c.tunnel.Add(n)
	if c.total != nil {
		c.total.Add(n)
	}
}

func (p *pump) copyLoop(dst, src net.Conn, pending []byte, n counter) error {
	if len(pending) > 0 {
		if p.window > 0 {
			dst.SetWriteDeadline(time.Now().Add(p.idle))
		}
		m, err := dst.Write(pending)
		n.Add(int64(m))
		if err != nil {
			return err
		}
		p.touch()
	}
	// Deadlines are refreshed only when a good part of their span has
	// passed: during a bulk transfer this loop turns thousands of times a
	// second, and each refresh is a timer update.
	var readSet, writeDeadline time.Time
	drained := false // the last burst was copied whole
	for {
		if p.window > 0 {
			if now := time.Now(); now.Sub(readSet) > p.window/8 {
				readSet = now
				src.SetReadDeadline(now.Add(p.window))
			}
		}
		avail, err := waitReadable(src, drained)
		drained = false
		if err != nil {
			if isTimeout(err) {
				if p.idleLongEnough() {
					return errIdle
				}
				continue
			}
			return err
		}
		if avail == 0 {
			// Readable with nothing queued: the peer's FIN (waitReadable
			// returns socket errors as errors). Pass the half-close on.
			closeWrite(dst)
			return nil
		}
		// Deadlines for the copy. The read deadline set above only ever
		// fires while the splice pipe is empty (the bytes copied are
		// already queued), so nothing is lost and the loop goes on. The
		// write deadline is most of an idle period away: it fires only for
		// a peer that stopped reading, and then the tunnel is torn down
		// anyway.
		if p.window > 0 {
			if now := time.Now(); writeDeadline.Sub(now) < p.idle-p.window {
				writeDeadline = now.Add(p.idle)
				dst.SetWriteDeadline(writeDeadline)
			}
		}
		var m int64
		if avail > 0 && avail <= smallBurst {
			// A small burst (a message, a ping): one read and one write
			// through a pooled buffer cost less than a splice through a
			// pipe, and nothing stays with the tunnel afterwards.
			m, err = copySmall(dst, src, avail)
		} else {
			var from io.Reader = src
			if avail > 0 {
				// Exactly what is queued: splice returns (and frees its
				// pipe) when the burst is through. (Splicing without a
				// limit while a backlog lasts measured no faster, and
				// kept pipes with tunnels that went idle.)
				from = &io.LimitedReader{R: src, N: int64(avail)}
			}
			m, err = copyOnce(dst, from)
		}
		if m > 0 {
			n.Add(m)
			p.touch()
		}
		switch {
		case err == nil && avail > 0: // the burst is through
			// Only after a small burst: after a large one more is
			// usually queued already, and the queue length is then the
			// one call that answers.
			drained = m == int64(avail) && avail <= smallBurst
		case err == io.EOF: // from copySmall
			closeWrite(dst)
			return nil
		case err == nil: // EOF: pass the half-close on
			closeWrite(dst)
			return nil
		case isTimeout(err):
			if !time.Now().Before(writeDeadline) {
				return errStalled
			}
			if m == 0 && p.idleLongEnough() {
				return errIdle
			}
		default:
			return err
		}
	}
}

// smallBurst is the largest burst copied through user space rather than
// spliced.
const smallBurst = 16 << 10

var smallBufPool = sync.Pool{New: func() any { b := make([]byte, smallBurst); return &b }}

// copySmall reads the n bytes queued on src and writes them to dst.
func copySmall(dst, src net.Conn, n int) (int64, error) {
	bp := smallBufPool.Get().(*[]byte)
	defer smallBufPool.Put(bp)
	k, err := src.Read((*bp)[:n])
	if k > 0 {
		w, werr := dst.Write((*bp)[:k])
		if werr != nil {
			return int64(w), werr
		}
	}
	if err == io.EOF && k > 0 {
		err = nil
	}
	return int64(k), err
}

// copyOnce copies src to dst until EOF or an error (or the limit of an
// *io.LimitedReader). Between two *net.TCPConn this is splice(2) on Linux:
// no bytes through user space.
func copyOnce(dst net.Conn, src io.Reader) (int64, error) {
	if d, ok := dst.(*net.TCPConn); ok {
		return d.ReadFrom(src)
	}
	return io.Copy(dst, src)
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
