//go:build !linux

package proxy

import "net"

// waitReadable cannot look into sockets here: the copy itself waits.
func waitReadable(c net.Conn, drained bool) (int, error) { return -1, nil }

// spliceable reports false: the copy goes through copyLoop.
func spliceable(dst, src net.Conn) (*net.TCPConn, *net.TCPConn, bool) { return nil, nil, false }

// spliceLoop is never called here (spliceable says false).
func (p *pump) spliceLoop(dst, src *net.TCPConn, n counter) error { return copyOnceErr(dst, src) }

func copyOnceErr(dst, src net.Conn) error {
	_, err := copyOnce(dst, src)
	return err
}
