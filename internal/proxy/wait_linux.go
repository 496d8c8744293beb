package proxy

import (
	"net"
	"syscall"
	"unsafe"
)

// waitReadable blocks until c has bytes (or EOF, or an error) to read, or
// its read deadline passes, without reading anything. It lets an idle
// tunnel wait without a splice pipe or a buffer.
func waitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var b [1]byte
	return rc.Read(func(fd uintptr) bool {
		_, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		return e != syscall.EAGAIN
	})
}
