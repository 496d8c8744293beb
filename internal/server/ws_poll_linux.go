//go:build linux

package server

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// wsPoller wakes the readers of idle WebSocket connections: each
// connection's socket is registered with one epoll instance per server
// (EPOLLONESHOT), and when it turns readable the loop starts a reader
// goroutine, which reads until the socket would block between two
// messages, re-arms the socket and exits. An idle connection so keeps no
// goroutine, and no stack, at all. The loop runs while connections are
// open (see wsState.add and remove).
type wsPoller struct {
	epfd int
	wake [2]int // a pipe: a byte on it stops the loop

	mu    sync.Mutex // guards conns; held while starting a reader
	conns map[int]*wsConn
}

func newWSPoller() (*wsPoller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	p := &wsPoller{epfd: epfd, conns: make(map[int]*wsConn)}
	if err := syscall.Pipe2(p.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil, os.NewSyscallError("pipe2", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p.wake[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev); err != nil {
		p.closeFDs()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return p, nil
}

func (p *wsPoller) closeFDs() {
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
	syscall.Close(p.epfd)
}

const wsPollEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// add registers wc's socket. The caller has started wc's first reader.
func (p *wsPoller) add(wc *wsConn) error {
	sc, ok := socketOf(wc.nc.Conn)
	if !ok {
		return errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return err
	}
	wc.nc.raw = raw
	p.mu.Lock()
	defer p.mu.Unlock()
	ev := syscall.EpollEvent{Events: wsPollEvents, Fd: int32(fd)}
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	wc.fd = fd
	p.conns[fd] = wc
	return nil
}

// rearm asks for the next readable event of wc's socket. A connection
// removed meanwhile is no error.
func (p *wsPoller) rearm(wc *wsConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[wc.fd] != wc {
		return
	}
	ev := syscall.EpollEvent{Events: wsPollEvents, Fd: int32(wc.fd)}
	syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, wc.fd, &ev)
}

// remove unregisters wc, before its socket is closed; no reader of it
// starts after remove returns.
func (p *wsPoller) remove(wc *wsConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[wc.fd] != wc {
		return
	}
	delete(p.conns, wc.fd)
	syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, wc.fd, nil)
}

// stop ends run.
func (p *wsPoller) stop() {
	syscall.Write(p.wake[1], []byte{0})
}

// run waits for readable sockets and starts their readers, until stop.
func (p *wsPoller) run(end func()) {
	defer end()
	defer p.closeFDs()
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			// Cannot happen with a valid epfd; stop waking rather than
			// spin. Connections still registered fail on their next
			// write or ping.
			return
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if int(ev.Fd) == p.wake[0] {
				p.mu.Unlock()
				return
			}
			wc := p.conns[int(ev.Fd)]
			if wc != nil && wc.reading.CompareAndSwap(false, true) {
				wc.readers.Add(1)
				go wc.readLoop()
			}
		}
		p.mu.Unlock()
	}
}

// socketOf finds the socket under c, looking through wrappers that say
// what they wrap with NetConn() net.Conn (the method crypto/tls.Conn has
// for the same purpose; capListener's cappedConn has it). net.Conn has no
// standard unwrapping, so a wrapper without that method hides its socket,
// and its connections are read without epoll (by a blocking reader). A TLS
// connection is never looked through: its bytes on the wire are not the
// WebSocket's, and it may hold decrypted bytes the socket no longer shows
// as readable, so its reader blocks in a goroutine as on other systems.
func socketOf(c net.Conn) (syscall.Conn, bool) {
	for range 4 {
		if _, ok := c.(*tls.Conn); ok {
			return nil, false
		}
		if sc, ok := c.(syscall.Conn); ok {
			return sc, true
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		if c = w.NetConn(); c == nil {
			return nil, false
		}
	}
	return nil, false
}

// tryRead reads what is there without waiting.
func (c *wsNetConn) tryRead(p []byte) (int, error) {
	var n int
	var serr error
	if err := c.raw.Read(func(fd uintptr) bool {
		n, serr = syscall.Read(int(fd), p)
		return true // never wait
	}); err != nil {
		return 0, err
	}
	switch {
	case serr == syscall.EAGAIN:
		return 0, errWouldBlock
	case serr != nil:
		return 0, os.NewSyscallError("read", serr)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// tryWrite writes as much of p as the socket takes without waiting.
func (c *wsNetConn) tryWrite(p []byte) (int, error) {
	if c.raw == nil {
		return 0, errWouldBlock // not polled: writes go through a goroutine
	}
	var n int
	var serr error
	if err := c.raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, err := syscall.Write(int(fd), p[n:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				serr = err
				break
			}
			n += k
		}
		return true // never wait
	}); err != nil {
		return n, err
	}
	switch {
	case serr == syscall.EAGAIN:
		return n, errWouldBlock
	case serr != nil:
		return n, os.NewSyscallError("write", serr)
	}
	return n, nil
}
