package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// maxUDPPeers bounds the destinations and resolved names one UDP
// association remembers.
const maxUDPPeers = 1024

// udpAssoc is one SOCKS5 UDP association: datagrams from the client that
// owns it are relayed to destinations the ACL allows, and answers from
// those destinations only are relayed back.
type udpAssoc struct {
	s        *Server
	relay    *net.UDPConn // the client sends here
	out      *net.UDPConn // talks to destinations
	clientIP netip.Addr
	hintPort uint16 // the port the client announced, 0 if none

	mu     sync.Mutex // guards client, peers, names
	client netip.AddrPort
	peers  map[netip.AddrPort]struct{}
	names  map[string]netip.Addr

	up, down   atomic.Int64
	lastActive atomic.Int64 // unix nanoseconds
}

func (s *Server) serveUDPAssociate(c *conn, l *tunnelLog, hint target, pending []byte) {
	l.proto = "socks5-udp"
	reply := func(rep byte, a netip.AddrPort) { c.nc.Write(socks5Reply(rep, a)) }
	if len(s.cfg.Upstreams) > 0 {
		reply(repCmdNotSupported, netip.AddrPort{})
		l.outcome = outcomeCommandNotSupported
		s.logTunnel(l)
		return
	}
	local := addrPortOf(c.nc.LocalAddr()).Addr()
	relay, err := s.cfg.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		reply(repGeneralFailure, netip.AddrPort{})
		l.outcome, l.err = outcomeUDPListenFailed, err
		s.logTunnel(l)
		return
	}
	out, err := s.cfg.ListenUDP("udp", nil)
	if err != nil {
		relay.Close()
		reply(repGeneralFailure, netip.AddrPort{})
		l.outcome, l.err = outcomeUDPListenFailed, err
		s.logTunnel(l)
		return
	}
	a := &udpAssoc{
		s: s, relay: relay, out: out, clientIP: c.ip,
		peers: map[netip.AddrPort]struct{}{}, names: map[string]netip.Addr{},
	}
	if hip, err := netip.ParseAddr(hint.host); err == nil && !hip.IsUnspecified() && hip.Unmap() != c.ip {
		// RFC 1928: the address the client will send from. One that is
		// not the client's own is ignored rather than trusted.
	} else {
		a.hintPort = hint.port
	}
	a.lastActive.Store(time.Now().UnixNano())
	c.state.Store(stateActive)
	s.metrics.active.Add(1)
	defer s.metrics.active.Add(-1)
	c.nc.SetDeadline(time.Time{})
	if _, err := c.nc.Write(socks5Reply(repSucceeded, addrPortOf(relay.LocalAddr()))); err != nil {
		relay.Close()
		out.Close()
		l.outcome, l.err = outcomeClientClosed, err
		s.logTunnel(l)
		return
	}
	done := make(chan struct{}, 2)
	go func() { a.clientToDest(); done <- struct{}{} }()
	go func() { a.destToClient(); done <- struct{}{} }()

	// The association lives as long as the TCP connection, and ends after
	// IdleTimeout without datagrams.
	err = a.watchControl(c.nc, s.cfg.IdleTimeout)
	relay.Close()
	out.Close()
	<-done
	<-done
	l.up, l.down = a.up.Load(), a.down.Load()
	l.outcome, l.err = tunnelOutcome(err), err
	if isEOF(err) {
		l.outcome, l.err = outcomeOK, nil
	}
	s.logTunnel(l)
}

// watchControl reads the control connection until it closes, or the
// association idles out.
func (a *udpAssoc) watchControl(nc net.Conn, idle time.Duration) error {
	var b [512]byte
	for {
		if idle > 0 {
			nc.SetReadDeadline(time.Now().Add(idle / 4))
		}
		_, err := nc.Read(b[:])
		if err == nil {
			continue // RFC 1928 gives the client nothing to say here
		}
		if isTimeout(err) {
			if time.Since(time.Unix(0, a.lastActive.Load())) >= idle {
				return errIdle
			}
			continue
		}
		return err
	}
}

// owns reports whether a datagram from src comes from the association's
// client, learning the client's port from its first datagram.
func (a *udpAssoc) owns(src netip.AddrPort) bool {
	if src.Addr().Unmap() != a.clientIP {
		return false
	}
	if a.hintPort != 0 && src.Port() != a.hintPort {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.client.IsValid() {
		a.client = src
	}
	return a.client == src
}

func (a *udpAssoc) clientToDest() {
	buf := make([]byte, 64<<10)
	for {
		n, src, err := a.relay.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if !a.owns(src) {
			continue
		}
		dst, payload, err := parseUDPHeader(buf[:n])
		if err != nil {
			continue
		}
		ap, err := a.resolve(dst)
		if err != nil {
			continue // UDP has no way to say no; the datagram is dropped
		}
		a.mu.Lock()
		if _, ok := a.peers[ap]; !ok && len(a.peers) < maxUDPPeers {
			a.peers[ap] = struct{}{}
		}
		a.mu.Unlock()
		if m, err := a.out.WriteToUDPAddrPort(payload, ap); err == nil {
			a.up.Add(int64(m))
			a.lastActive.Store(time.Now().UnixNano())
		}
	}
}

// resolve checks a datagram's destination, resolving a name once per
// association.
func (a *udpAssoc) resolve(t target) (netip.AddrPort, error) {
	a.mu.Lock()
	ip, ok := a.names[t.host]
	a.mu.Unlock()
	if !ok {
		addrs, err := a.s.resolve(a.s.ctx, t)
		if err != nil {
			return netip.AddrPort{}, err
		}
		ip = addrs[0]
		a.mu.Lock()
		if len(a.names) < maxUDPPeers {
			a.names[t.host] = ip
		}
		a.mu.Unlock()
	}
	return netip.AddrPortFrom(ip, t.port), nil
}

func (a *udpAssoc) destToClient() {
	buf := make([]byte, 64<<10)
	const hdrRoom = 3 + 1 + 16 + 2
	for {
		n, src, err := a.out.ReadFromUDPAddrPort(buf[hdrRoom:])
		if err != nil {
			return
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		a.mu.Lock()
		_, known := a.peers[src]
		client := a.client
		a.mu.Unlock()
		if !known || !client.IsValid() {
			continue
		}
		hdr := appendSOCKS5Addr([]byte{0, 0, 0}, src)
		start := hdrRoom - len(hdr)
		copy(buf[start:], hdr)
		if _, err := a.relay.WriteToUDPAddrPort(buf[start:hdrRoom+n], client); err == nil {
			a.down.Add(int64(n))
			a.lastActive.Store(time.Now().UnixNano())
		}
	}
}

// parseUDPHeader splits a SOCKS5 UDP datagram into destination and
// payload. Fragments are not supported (RFC 1928 allows dropping them).
func parseUDPHeader(b []byte) (target, []byte, error) {
	if len(b) < 4 {
		return target{}, nil, errTooShort
	}
	if b[0] != 0 || b[1] != 0 {
		return target{}, nil, errBadVersion
	}
	if b[2] != 0 {
		return target{}, nil, errFragment
	}
	rest := b[4:]
	var host string
	switch b[3] {
	case atypIPv4:
		if len(rest) < 4+2 {
			return target{}, nil, errTooShort
		}
		host = netip.AddrFrom4([4]byte(rest[:4])).String()
		rest = rest[4:]
	case atypIPv6:
		if len(rest) < 16+2 {
			return target{}, nil, errTooShort
		}
		host = netip.AddrFrom16([16]byte(rest[:16])).String()
		rest = rest[16:]
	case atypDomain:
		if len(rest) < 1 || len(rest) < 1+int(rest[0])+2 {
			return target{}, nil, errTooShort
		}
		n := int(rest[0])
		if n == 0 {
			return target{}, nil, errEmptyDomain
		}
		host = string(rest[1 : 1+n])
		rest = rest[1+n:]
	default:
		return target{}, nil, errBadAddrType
	}
	port := uint16(rest[0])<<8 | uint16(rest[1])
	if port == 0 {
		return target{}, nil, errBadPort
	}
	return target{host: host, port: port}, rest[2:], nil
}

var (
	errTooShort = errors.New("datagram too short")
	errFragment = errors.New("fragmented datagram")
)
