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
	srcRC, err := src.SyscallConn()
	if err != nil {
		return err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	var pipe *splicePipe
	defer func() {
		if pipe != nil {
			pipe.release()
		}
	}()
	var readSet, writeDeadline time.Time
	for {
		if p.window > 0 {
			if now := time.Now(); now.Sub(readSet) > p.window/8 {
				readSet = now
				src.SetReadDeadline(now.Add(p.window))
			}
		}
		var eof bool
		var spliceErr error
		err := srcRC.Read(func(fd uintptr) bool {
			if pipe == nil {
				if pipe, spliceErr = getPipe(); spliceErr != nil {
					return true
				}
			}
			for {
				k, e := rawSplice(int(fd), pipe.w, pipe.size)
				switch {
				case e == syscall.EINTR:
					continue
				case e == syscall.EAGAIN:
					// Nothing queued: wait without the pipe (it is empty:
					// every read follows a flush).
					pipe.release()
					pipe = nil
					return false
				case e != 0:
					spliceErr = &net.OpError{Op: "read", Net: "tcp", Source: src.LocalAddr(), Addr: src.RemoteAddr(), Err: os.NewSyscallError("splice", e)}
				case k == 0:
					eof = true
				default:
					pipe.buffered = k
				}
				return true
			}
		})
		if err == nil {
			err = spliceErr
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
		if eof {
			closeWrite(dst)
			return nil
		}
		if p.window > 0 {
			if now := time.Now(); writeDeadline.Sub(now) < p.idle-p.window {
				writeDeadline = now.Add(p.idle)
				dst.SetWriteDeadline(writeDeadline)
			}
		}
		var moved int
		err = dstRC.Write(func(fd uintptr) bool {
			for pipe.buffered > 0 {
				k, e := rawSplice(pipe.r, int(fd), pipe.buffered)
				switch {
				case e == syscall.EINTR:
					continue
				case e == syscall.EAGAIN:
					return false
				case e != 0:
					spliceErr = &net.OpError{Op: "write", Net: "tcp", Source: dst.LocalAddr(), Addr: dst.RemoteAddr(), Err: os.NewSyscallError("splice", e)}
					return true
				}
				pipe.buffered -= k
				moved += k
			}
			return true
		})
		if moved > 0 {
			n.Add(int64(moved))
			p.touch()
		}
		if err == nil {
			err = spliceErr
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

// rawSplice moves up to n bytes from in to out without blocking.
func rawSplice(in, out, n int) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n),
		unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
	return int(r), e
}

// spliceCopy runs spliceLoop when both ends are TCP sockets, and
// reports false (having done nothing) otherwise.
func (p *pump) spliceCopy(dst, src net.Conn, n counter) (bool, error) {
	d, ok1 := dst.(*net.TCPConn)
	s, ok2 := src.(*net.TCPConn)
	if !ok1 || !ok2 {
		return false, nil
	}
	return true, p.spliceLoop(d, s, n)
}
