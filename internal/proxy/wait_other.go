//go:build !linux

package proxy

import "net"

// waitReadable is a no-op where splice does not exist: the copy itself
// waits.
func waitReadable(c net.Conn) error { return nil }
