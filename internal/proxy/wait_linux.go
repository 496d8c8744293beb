package proxy

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// waitReadable blocks until c has bytes (or EOF, or an error) to read, or
// its read deadline passes, without reading anything, and returns how many
// bytes are queued: 0 means the peer's FIN is next (EOF), and a socket
// error is returned as the error, so the caller need not read to tell
// which. It returns -1 when c is not a socket it can look into.
//
// It lets an idle tunnel wait without a buffer or a splice pipe, and lets
// the pump splice exactly what is queued, so the pipe goes back to the
// pool as soon as a burst is through instead of staying with an idle
// tunnel (two pipes are four file descriptors).
//
// drained says the caller has just read everything the previous call
// reported: then the socket is almost surely empty, and the first look
// skips the queue-length ioctl and peeks at once (one system call, not
// two). The peek cannot be skipped too: a FIN that came with the bytes
// just copied raises no new poller edge, so waiting blind would wait
// forever.
func waitReadable(c net.Conn, drained bool) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, nil
	}
	avail := -1
	var sockErr error
	var b [1]byte
	skipInq := drained
	err = rc.Read(func(fd uintptr) bool {
		// Bytes queued: ready (one syscall in the common case).
		var n int32
		if skipInq {
			skipInq = false
		} else if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, unix.SIOCINQ, uintptr(unsafe.Pointer(&n))); e == 0 && n > 0 {
			avail = int(n)
			return true
		}
		// Nothing queued: either nothing yet (wait), or EOF or an error
		// (ready: the caller's read will tell which).
		got, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EAGAIN || e == syscall.EINTR {
			return false
		}
		avail = 0
		switch {
		case e != 0:
			sockErr = &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: e}
		case got > 0:
			// A byte arrived between the two calls.
			if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, unix.SIOCINQ, uintptr(unsafe.Pointer(&n))); e == 0 {
				avail = max(int(n), 1)
			} else {
				avail = 1
			}
		}
		return true
	})
	if err == nil {
		err = sockErr
	}
	return avail, err
}
