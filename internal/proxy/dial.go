package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
)

// failure classifies why a destination could not be reached; it picks the
// HTTP status, the SOCKS reply code and the access-log outcome.
type failure int

const (
	failGeneral     failure = iota // anything else
	failForbidden                  // the ACL refused the destination
	failResolve                    // the name did not resolve
	failRefused                    // connection refused
	failNetUnreach                 // network unreachable
	failHostUnreach                // host unreachable
	failTimeout                    // dial timed out
	failUpstream                   // every upstream proxy failed
	failBadAddress                 // malformed host or port
)

func (f failure) String() string { return f.outcome().String() }

// outcome is the access-log outcome of a dial that failed with f.
func (f failure) outcome() outcome {
	switch f {
	case failForbidden:
		return outcomeForbidden
	case failResolve:
		return outcomeResolveFailed
	case failRefused:
		return outcomeConnectionRefused
	case failNetUnreach:
		return outcomeNetworkUnreachable
	case failHostUnreach:
		return outcomeHostUnreachable
	case failTimeout:
		return outcomeDialTimeout
	case failUpstream:
		return outcomeUpstreamFailed
	case failBadAddress:
		return outcomeBadAddress
	}
	return outcomeDialFailed
}

// dialError is the error of a failed destination dial.
type dialError struct {
	kind failure
	err  error
}

func (e *dialError) Error() string { return e.kind.String() + ": " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// errForbidden is the cause of a dialError with kind failForbidden.
var errForbidden = errors.New("destination not allowed")

// failureOf classifies err.
func failureOf(err error) failure {
	var de *dialError
	if errors.As(err, &de) {
		return de.kind
	}
	return classifyNetErr(err)
}

func classifyNetErr(err error) failure {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return failRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return failNetUnreach
	case errors.Is(err, syscall.EHOSTUNREACH):
		return failHostUnreach
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return failTimeout
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return failResolve
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return failTimeout
	}
	return failGeneral
}

// httpStatus maps a dial failure to the HTTP status the client gets. It is
// the one place where that mapping lives.
func (f failure) httpStatus() int {
	switch f {
	case failForbidden:
		return 403
	case failBadAddress:
		return 400
	case failTimeout:
		return 504
	}
	return 502
}

// socks5Reply maps a dial failure to the RFC 1928 reply code.
func (f failure) socks5Reply() byte {
	switch f {
	case failForbidden:
		return repNotAllowed
	case failNetUnreach:
		return 0x03
	case failResolve, failHostUnreach, failTimeout:
		return 0x04
	case failRefused:
		return 0x05
	case failBadAddress:
		return 0x01
	}
	return 0x01
}

// target is a destination as the client named it.
type target struct {
	host string // a name or an IP literal, without brackets
	port uint16
}

func (t target) String() string { return net.JoinHostPort(t.host, strconv.Itoa(int(t.port))) }

// parseTarget parses "host:port" as written in CONNECT or a URL authority.
func parseTarget(hostport string) (target, error) {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return target{}, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return target{}, fmt.Errorf("bad port %q", p)
	}
	if h == "" {
		return target{}, errors.New("empty host")
	}
	return target{host: h, port: uint16(n)}, nil
}

// resolve turns t into the addresses the ACL allows, resolving a name once.
func (s *Server) resolve(ctx context.Context, t target) ([]netip.Addr, error) {
	if t.host == "" || len(t.host) > 255 {
		return nil, &dialError{failBadAddress, errors.New("bad host")}
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(t.host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		as, err := s.cfg.LookupNetIP(ctx, t.host)
		if err != nil {
			return nil, &dialError{failResolve, fmt.Errorf("resolve %s: %w", t.host, err)}
		}
		if len(as) == 0 {
			return nil, &dialError{failResolve, fmt.Errorf("resolve %s: no addresses", t.host)}
		}
		addrs = as
	}
	ok := addrs[:0:0]
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if s.acl.allowed(a) && !s.isSelf(netip.AddrPortFrom(a, t.port)) {
			ok = append(ok, a)
		}
	}
	if len(ok) == 0 {
		return nil, &dialError{failForbidden, fmt.Errorf("%s: %w", t.host, errForbidden)}
	}
	return ok, nil
}

// isSelf reports whether ap is one of the server's own listeners: with
// private destinations allowed, a client could otherwise make the proxy
// connect to itself over and over.
func (s *Server) isSelf(ap netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		la := addrPortOf(ln.Addr())
		if la.Port() != ap.Port() {
			continue
		}
		if l := la.Addr().Unmap(); l == ap.Addr() || l.IsUnspecified() && (ap.Addr().IsLoopback() || ap.Addr().IsUnspecified()) {
			return true
		}
	}
	return false
}

// dialTarget resolves and checks t, then connects to the first allowed
// address that answers, directly or through the upstream proxies. It
// returns the connection and the address that was dialled.
func (s *Server) dialTarget(ctx context.Context, t target) (net.Conn, netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	addrs, err := s.resolve(ctx, t)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	var last error
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, t.port)
		var c net.Conn
		if len(s.cfg.Upstreams) > 0 {
			c, err = s.dialUpstreams(ctx, ap.String())
		} else {
			c, err = s.cfg.Dial(ctx, "tcp", ap.String())
		}
		if err == nil {
			return c, ap, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	var de *dialError
	if errors.As(last, &de) {
		return nil, netip.AddrPort{}, last
	}
	return nil, netip.AddrPort{}, &dialError{classifyNetErr(last), fmt.Errorf("dial %s: %w", t, last)}
}
