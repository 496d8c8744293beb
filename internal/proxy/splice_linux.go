package proxy

import (
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// spliceLoop moves src to dst through a kernel pipe until EOF (then
// half-closes dst) or an error, the way a C relay does it: from one
// readiness wake-up it splices socket → pipe → socket again and again
// until the source answers EAGAIN, and only then parks in the runtime's
// poller. It exists because a burst copied through net.TCPConn.ReadFrom
// cost, besides its two splices, a queue-length ioctl, a readiness peek
// and a trip through the scheduler each time (1.2–1.4× HAProxy's CPU per
// GB relayed; docs/benchmarks.md).
//
// The splices are raw system calls (syscall.RawSyscall6): they are
// non-blocking on non-blocking descriptors, so the runtime need not be
// told, and telling it (entersyscall) woke its monitor thread on every
// call. A splice of a full pipe over loopback stays in the kernel for
// some 100 µs; the goroutine keeps its P for that long, as it would for
// any computation.
//
// A pipe is taken from pipePool when bytes arrive and given back before
// the loop parks, so an idle tunnel holds no pipe.
//
// Deadlines are as in copyLoop: the read deadline (a window) only ever
// fires while the pipe is empty, and then the idle check decides; the
// write deadline is about an idle period ahead and fires only for a peer
// that stopped reading.
func (p *pump) spliceLoop(dst, src *net.TCPConn, n counter) error {
	// All of the direction's state lives in one allocation, with its two
	// callbacks made once: closures built inside the loop would put their
	// captured variables on the heap at every turn, and a small frame here
	// keeps a parked tunnel's stack at its first 2 KiB.
	s := &splicer{p: p, src: src, dst: dst, n: n}
	s.fillFn, s.drainFn = s.fill, s.drain
	err := s.run()
	s.releasePipe()
	return err
}

// splicer is one direction's state between spliceLoop and its RawConn
// callbacks.
type splicer struct {
	p                    *pump
	src, dst             *net.TCPConn
	n                    counter
	fillFn, drainFn      func(uintptr) bool
	readSet, writeExpiry time.Time   // when the deadlines were last moved
	pipe                 *splicePipe // nil while the direction waits for bytes
	eof                  bool        // fill saw the source's FIN
	err                  error       // a splice or pipe error from a callback
	moved                int         // bytes drain spliced out this turn
}

func (s *splicer) run() error {
	srcRC, err := s.src.SyscallConn()
	if err != nil {
		return err
	}
	dstRC, err := s.dst.SyscallConn()
	if err != nil {
		return err
	}
	p := s.p
	for {
		if p.window > 0 {
			s.moveReadDeadline()
		}
		s.eof, s.err = false, nil
		err := srcRC.Read(s.fillFn)
		if err == nil {
			err = s.err
		}
		if err != nil {
			if isTimeout(err) {
				if p.idleLongEnough() {
					return errIdle
				}
				continue
			}
			return err
		}
		if s.eof {
			closeWrite(s.dst)
			return nil
		}
		if p.window > 0 {
			s.moveWriteDeadline()
		}
		s.moved = 0
		err = dstRC.Write(s.drainFn)
		if s.moved > 0 {
			s.n.Add(int64(s.moved))
			p.touch()
		}
		if err == nil {
			err = s.err
		}
		if err != nil {
			if isTimeout(err) {
				// Only the write deadline is armed on dst's side here.
				return errStalled
			}
			return err
		}
	}
}

// moveReadDeadline pushes the source's read deadline a window ahead when
// an eighth of a window has passed since it was last moved.
func (s *splicer) moveReadDeadline() {
	if now := time.Now(); now.Sub(s.readSet) > s.p.window/8 {
		s.readSet = now
		s.src.SetReadDeadline(now.Add(s.p.window))
	}
}

// moveWriteDeadline keeps the destination's write deadline about an idle
// period ahead, moving it only when less than idle-window is left.
func (s *splicer) moveWriteDeadline() {
	if now := time.Now(); s.writeExpiry.Sub(now) < s.p.idle-s.p.window {
		s.writeExpiry = now.Add(s.p.idle)
		s.dst.SetWriteDeadline(s.writeExpiry)
	}
}

// fill splices what the source has queued into the pipe (taking one from
// the pool first). It reports false, giving the pipe back, when nothing
// is queued: RawConn.Read then parks in the poller and calls it again on
// readiness.
func (s *splicer) fill(fd uintptr) bool {
	if s.pipe == nil {
		if s.pipe, s.err = getPipe(); s.err != nil {
			return true
		}
	}
	for {
		k, e := rawSplice(int(fd), s.pipe.w, s.pipe.size)
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			// The pipe is empty here (every fill follows a drain), so the
			// direction waits without it.
			s.releasePipe()
			return false
		case e != 0:
			s.err = &net.OpError{Op: "read", Net: "tcp", Source: s.src.LocalAddr(), Addr: s.src.RemoteAddr(), Err: os.NewSyscallError("splice", e)}
		case k == 0:
			s.eof = true
		default:
			s.pipe.buffered = k
		}
		return true
	}
}

// drain splices the pipe's bytes into the destination; it reports false
// when the destination's buffer is full, so RawConn.Write waits for room.
func (s *splicer) drain(fd uintptr) bool {
	for s.pipe.buffered > 0 {
		k, e := rawSplice(s.pipe.r, int(fd), s.pipe.buffered)
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return false
		case e != 0:
			s.err = &net.OpError{Op: "write", Net: "tcp", Source: s.dst.LocalAddr(), Addr: s.dst.RemoteAddr(), Err: os.NewSyscallError("splice", e)}
			return true
		}
		s.pipe.buffered -= k
		s.moved += k
	}
	return true
}

func (s *splicer) releasePipe() {
	if s.pipe != nil {
		s.pipe.release()
		s.pipe = nil
	}
}

// rawSplice moves up to n bytes from in to out without blocking.
func rawSplice(in, out, n int) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n),
		unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
	return int(r), e
}

// spliceable returns the two ends as TCP sockets when spliceLoop can
// take them.
func spliceable(dst, src net.Conn) (*net.TCPConn, *net.TCPConn, bool) {
	d, ok1 := dst.(*net.TCPConn)
	s, ok2 := src.(*net.TCPConn)
	return d, s, ok1 && ok2
}
