//go:build !linux

package server

import "errors"

// wsPoller is Linux-only (epoll); elsewhere every connection keeps a reader
// goroutine blocked in Read.
type wsPoller struct{}

func newWSPoller() (*wsPoller, error) { return nil, errors.New("no epoll on this system") }

func (p *wsPoller) add(*wsConn) error             { return errors.New("no epoll") }
func (p *wsPoller) rearm(*wsConn)                 {}
func (p *wsPoller) remove(*wsConn)                {}
func (p *wsPoller) stop()                         {}
func (p *wsPoller) run(end func())                { end() }
func (c *wsNetConn) tryRead([]byte) (int, error)  { return 0, errWouldBlock }
func (c *wsNetConn) tryWrite([]byte) (int, error) { return 0, errWouldBlock }
func (p *wsPoller) closeFDs()                     {}
