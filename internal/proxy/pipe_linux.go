package proxy

import (
	"golang.org/x/sys/unix"
)

// splicePipe is a kernel pipe that one tunnel direction splices through
// while it has bytes to move.
type splicePipe struct {
	r, w     int // read and write ends, both non-blocking
	size     int // capacity: what one splice into it may move
	buffered int // bytes in the pipe not yet spliced out
}

// pipeSize is the capacity asked for each pipe: one splice can then move
// a full socket queue of a fast stream. Where the kernel refuses it
// (fs.pipe-max-size, or the per-user pipe page limits) the pipe keeps
// the size it got.
const pipeSize = 1 << 20

// pipePoolSize bounds the pipes kept for reuse: enough for the
// directions busy at one time on a loaded proxy; a pipe given back to a
// full pool is closed, so idle times cost no descriptors beyond these.
const pipePoolSize = 64

var pipePool = make(chan *splicePipe, pipePoolSize)

// getPipe returns an empty pipe from the pool or a new one.
func getPipe() (*splicePipe, error) {
	select {
	case p := <-pipePool:
		return p, nil
	default:
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, err
	}
	p := &splicePipe{r: fds[0], w: fds[1], size: 64 << 10}
	if n, err := unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize); err == nil {
		p.size = n
	} else if n, err := unix.FcntlInt(uintptr(fds[1]), unix.F_GETPIPE_SZ, 0); err == nil {
		p.size = n
	}
	return p, nil
}

// release gives an empty pipe back to the pool, and closes one that still
// holds bytes (they belong to a tunnel that failed) or that the pool has
// no room for.
func (p *splicePipe) release() {
	if p.buffered == 0 {
		select {
		case pipePool <- p:
			return
		default:
		}
	}
	unix.Close(p.r)
	unix.Close(p.w)
}
