package proxy

import (
	"bufio"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Handshake parse errors. The wire answer for each is decided by the
// caller; they only name what was wrong.
var (
	errBadVersion  = errors.New("unknown protocol version")
	errNoMethods   = errors.New("no authentication methods offered")
	errBadAddrType = errors.New("unknown address type")
	errEmptyDomain = errors.New("empty domain name")
	errTooLong     = errors.New("field too long")
	errBadPort     = errors.New("port 0")
)

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

func getReader(r io.Reader) *bufio.Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readerPool.Put(br)
}

// takeBuffered returns a copy of the bytes br holds beyond what was parsed:
// bytes a client sent ahead of the reply, owed to the destination.
func takeBuffered(br *bufio.Reader) []byte {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := br.Peek(n)
	return append([]byte(nil), b...)
}

// checkCredentials reports whether user and pass match a configured
// credential, comparing every entry in constant time.
func (s *Server) checkCredentials(user, pass string) bool {
	ok := 0
	for _, c := range s.cfg.Credentials {
		u := subtle.ConstantTimeCompare([]byte(user), []byte(c.User))
		p := subtle.ConstantTimeCompare([]byte(pass), []byte(c.Password))
		ok |= u & p
	}
	return ok == 1
}

// ---- SOCKS4 / SOCKS4a ----

// socks4Request is a parsed SOCKS4 or SOCKS4a request.
type socks4Request struct {
	cmd    byte
	port   uint16
	ip     [4]byte
	user   string
	domain string // SOCKS4a only
}

// readSOCKS4 parses a SOCKS4/4a request after its version byte.
func readSOCKS4(br *bufio.Reader) (socks4Request, error) {
	var r socks4Request
	var h [7]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return r, err
	}
	r.cmd = h[0]
	r.port = uint16(h[1])<<8 | uint16(h[2])
	copy(r.ip[:], h[3:7])
	var err error
	if r.user, err = readCString(br, 255); err != nil {
		return r, fmt.Errorf("user id: %w", err)
	}
	if r.ip[0] == 0 && r.ip[1] == 0 && r.ip[2] == 0 && r.ip[3] != 0 {
		if r.domain, err = readCString(br, 255); err != nil {
			return r, fmt.Errorf("domain: %w", err)
		}
		if r.domain == "" {
			return r, errEmptyDomain
		}
	}
	if r.port == 0 {
		return r, errBadPort
	}
	return r, nil
}

// readCString reads a NUL-terminated string of at most max bytes.
func readCString(br *bufio.Reader, max int) (string, error) {
	var b []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		if c == 0 {
			return string(b), nil
		}
		if len(b) == max {
			return "", errTooLong
		}
		b = append(b, c)
	}
}

func (s *Server) serveSOCKS4(c *conn, br *bufio.Reader) {
	req, err := readSOCKS4(br)
	pending := takeBuffered(br)
	putReader(br)
	reject := func() { c.nc.Write([]byte{0, 0x5B, 0, 0, 0, 0, 0, 0}) }
	if err != nil {
		if !isEOF(err) && !isTimeout(err) {
			reject()
		}
		s.logHandshakeFailure(c, "socks4", err)
		return
	}
	l := &tunnelLog{proto: "socks4", client: c.nc.RemoteAddr(), user: req.user, start: time.Now()}
	t := target{host: netip.AddrFrom4(req.ip).String(), port: req.port}
	if req.domain != "" {
		t.host = req.domain
	}
	l.target = t.String()
	switch {
	case c.refusal != refuseNone:
		reject()
		l.outcome = c.refusal.outcome()
		s.logTunnel(l)
		return
	case req.cmd != 1: // BIND and anything else
		reject()
		l.outcome = outcomeCommandNotSupported
		s.logTunnel(l)
		return
	case len(s.cfg.Credentials) > 0:
		reject()
		l.outcome = outcomeAuthRequired
		s.logTunnel(l)
		return
	}
	s.tunnel(c, l, t, pending, func(bound net.Addr, f failure, err error) error {
		if err != nil {
			_, werr := c.nc.Write([]byte{0, 0x5B, 0, 0, 0, 0, 0, 0})
			return werr
		}
		rep := []byte{0, 0x5A, 0, 0, 0, 0, 0, 0}
		if ta, ok := bound.(*net.TCPAddr); ok {
			if ip4 := ta.IP.To4(); ip4 != nil {
				rep[2], rep[3] = byte(ta.Port>>8), byte(ta.Port)
				copy(rep[4:], ip4)
			}
		}
		_, werr := c.nc.Write(rep)
		return werr
	})
}

// ---- SOCKS5 ----

// SOCKS5 constants (RFC 1928, RFC 1929).
const (
	methodNone     = 0x00
	methodPassword = 0x02
	methodNoAccept = 0xFF

	cmdConnect      = 0x01
	cmdBind         = 0x02
	cmdUDPAssociate = 0x03

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04

	repSucceeded        = 0x00
	repGeneralFailure   = 0x01
	repNotAllowed       = 0x02
	repCmdNotSupported  = 0x07
	repAddrNotSupported = 0x08
)

// readSOCKS5Methods parses the greeting after its version byte and
// returns the offered methods.
func readSOCKS5Methods(br *bufio.Reader) ([]byte, error) {
	n, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errNoMethods
	}
	m := make([]byte, n)
	if _, err := io.ReadFull(br, m); err != nil {
		return nil, err
	}
	return m, nil
}

// readSOCKS5Auth parses an RFC 1929 username/password request.
func readSOCKS5Auth(br *bufio.Reader) (user, pass string, err error) {
	v, err := br.ReadByte()
	if err != nil {
		return "", "", err
	}
	if v != 1 {
		return "", "", errBadVersion
	}
	if user, err = readPString(br); err != nil {
		return "", "", err
	}
	if pass, err = readPString(br); err != nil {
		return "", "", err
	}
	return user, pass, nil
}

func readPString(br *bufio.Reader) (string, error) {
	n, err := br.ReadByte()
	if err != nil {
		return "", err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// socks5Request is a parsed SOCKS5 request.
type socks5Request struct {
	cmd byte
	dst target
}

// socks5Error is a request error with the reply code it earns.
type socks5Error struct {
	rep byte
	err error
}

func (e *socks5Error) Error() string { return e.err.Error() }
func (e *socks5Error) Unwrap() error { return e.err }

// readSOCKS5Request parses a request, version byte included.
func readSOCKS5Request(br *bufio.Reader) (socks5Request, error) {
	var r socks5Request
	var h [4]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return r, err
	}
	if h[0] != 5 {
		return r, &socks5Error{repGeneralFailure, errBadVersion}
	}
	r.cmd = h[1]
	host, err := readSOCKS5Addr(br, h[3])
	if err != nil {
		return r, err
	}
	var p [2]byte
	if _, err := io.ReadFull(br, p[:]); err != nil {
		return r, err
	}
	r.dst = target{host: host, port: uint16(p[0])<<8 | uint16(p[1])}
	return r, nil
}

// readSOCKS5Addr reads an address of type atyp.
func readSOCKS5Addr(br *bufio.Reader, atyp byte) (string, error) {
	switch atyp {
	case atypIPv4:
		var a [4]byte
		if _, err := io.ReadFull(br, a[:]); err != nil {
			return "", err
		}
		return netip.AddrFrom4(a).String(), nil
	case atypIPv6:
		var a [16]byte
		if _, err := io.ReadFull(br, a[:]); err != nil {
			return "", err
		}
		return netip.AddrFrom16(a).String(), nil
	case atypDomain:
		d, err := readPString(br)
		if err != nil {
			return "", err
		}
		if d == "" {
			return "", &socks5Error{repGeneralFailure, errEmptyDomain}
		}
		return d, nil
	}
	return "", &socks5Error{repAddrNotSupported, errBadAddrType}
}

// appendSOCKS5Addr appends ATYP, address and port of a to b.
func appendSOCKS5Addr(b []byte, a netip.AddrPort) []byte {
	ip := a.Addr().Unmap()
	if ip.Is4() || !ip.IsValid() {
		v4 := [4]byte{}
		if ip.IsValid() {
			v4 = ip.As4()
		}
		b = append(b, atypIPv4)
		b = append(b, v4[:]...)
	} else {
		v6 := ip.As16()
		b = append(b, atypIPv6)
		b = append(b, v6[:]...)
	}
	return append(b, byte(a.Port()>>8), byte(a.Port()))
}

func socks5Reply(rep byte, bound netip.AddrPort) []byte {
	return appendSOCKS5Addr([]byte{5, rep, 0}, bound)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(addrString(a))
	return ap
}

func (s *Server) serveSOCKS5(c *conn, br *bufio.Reader) {
	defer func() {
		if br != nil {
			putReader(br)
		}
	}()
	l := &tunnelLog{proto: "socks5", client: c.nc.RemoteAddr(), start: time.Now()}
	methods, err := readSOCKS5Methods(br)
	if err != nil {
		if errors.Is(err, errNoMethods) {
			c.nc.Write([]byte{5, methodNoAccept})
		}
		s.logHandshakeFailure(c, "socks5", err)
		return
	}
	want := byte(methodNone)
	if len(s.cfg.Credentials) > 0 {
		want = methodPassword
	}
	// Exactly one method is acceptable: password with --auth, none
	// without. A client that offers only username/password to a proxy
	// without --auth gets "no acceptable methods", as RFC 1928 has it and
	// as dante answers; accepting any credentials instead would teach
	// clients that a proxy checks passwords it does not (docs/proxy.md).
	chosen := byte(methodNoAccept)
	for _, m := range methods {
		if m == want {
			chosen = want
		}
	}
	if _, err := c.nc.Write([]byte{5, chosen}); err != nil {
		s.logHandshakeFailure(c, "socks5", err)
		return
	}
	if chosen == methodNoAccept {
		l.outcome = outcomeAuthRequired
		s.logTunnel(l)
		return
	}
	if chosen == methodPassword {
		user, pass, err := readSOCKS5Auth(br)
		if err != nil {
			s.logHandshakeFailure(c, "socks5", err)
			return
		}
		l.user = user
		if want == methodPassword && !s.checkCredentials(user, pass) {
			c.nc.Write([]byte{1, 1})
			l.outcome = outcomeAuthFailed
			s.logTunnel(l)
			return
		}
		if _, err := c.nc.Write([]byte{1, 0}); err != nil {
			s.logHandshakeFailure(c, "socks5", err)
			return
		}
	}
	req, err := readSOCKS5Request(br)
	if err != nil {
		var se *socks5Error
		if errors.As(err, &se) {
			c.nc.Write(socks5Reply(se.rep, netip.AddrPort{}))
		}
		s.logHandshakeFailure(c, "socks5", err)
		return
	}
	l.target = req.dst.String()
	if c.refusal != refuseNone {
		// 0x02, "connection not allowed by ruleset": the nearest RFC 1928
		// has to "over a connection cap"; the log says which.
		c.nc.Write(socks5Reply(repNotAllowed, netip.AddrPort{}))
		l.outcome = c.refusal.outcome()
		s.logTunnel(l)
		return
	}
	switch req.cmd {
	case cmdConnect:
	case cmdUDPAssociate:
		pending := takeBuffered(br)
		putReader(br)
		br = nil
		s.serveUDPAssociate(c, l, req.dst, pending)
		return
	default:
		c.nc.Write(socks5Reply(repCmdNotSupported, netip.AddrPort{}))
		l.outcome = outcomeCommandNotSupported
		s.logTunnel(l)
		return
	}
	if req.dst.port == 0 {
		c.nc.Write(socks5Reply(repGeneralFailure, netip.AddrPort{}))
		l.outcome = failBadAddress.outcome()
		s.logTunnel(l)
		return
	}
	pending := takeBuffered(br)
	putReader(br)
	br = nil
	s.tunnel(c, l, req.dst, pending, func(bound net.Addr, f failure, err error) error {
		rep := byte(repSucceeded)
		if err != nil {
			rep = f.socks5Reply()
		}
		_, werr := c.nc.Write(socks5Reply(rep, addrPortOf(bound)))
		return werr
	})
}

// tunnel dials t for the client c, answers with reply, and pumps bytes
// until the tunnel ends; then it writes the access-log line.
func (s *Server) tunnel(c *conn, l *tunnelLog, t target, pending []byte,
	reply func(bound net.Addr, f failure, err error) error) {
	c.state.Store(stateActive)
	// The reply must still be writable after a slow dial.
	c.nc.SetDeadline(time.Now().Add(s.cfg.DialTimeout + s.cfg.HandshakeTimeout))
	dst, ap, err := s.dialTarget(s.ctx, t)
	if err != nil {
		f := failureOf(err)
		reply(nil, f, err)
		l.outcome, l.err = f.outcome(), err
		s.logTunnel(l)
		return
	}
	l.addr = ap.String()
	if err := reply(dst.LocalAddr(), 0, nil); err != nil {
		dst.Close()
		l.outcome, l.err = outcomeClientClosed, err
		s.logTunnel(l)
		return
	}
	c.nc.SetDeadline(time.Time{})
	// Hand the connection to fresh goroutines: this one has grown its
	// stack during the handshake, and an idle tunnel should cost two
	// small stacks, not that one.
	c.handedOff = true
	s.metrics.active.Add(1)
	s.wg.Go(func() {
		defer s.untrack(c)
		defer c.nc.Close()
		defer s.metrics.active.Add(-1)
		up, down, err := runPump(c.nc, dst, pending, nil, s.cfg.IdleTimeout, &s.metrics.bytesUp, &s.metrics.bytesDown)
		dst.Close()
		l.up, l.down, l.bytesCounted = up, down, true
		l.outcome, l.err = tunnelOutcome(err), err
		s.logTunnel(l)
	})
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
