package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// socks4Dialer connects through a SOCKS4 or SOCKS4a proxy. golang.org/x/net/proxy
// speaks SOCKS5 only, and SOCKS4 is small enough to write here.
//
// SOCKS4 request: VN=4, CD=1 (CONNECT), DSTPORT (2 bytes, big endian),
// DSTIP (4 bytes), USERID, NUL. SOCKS4a sets DSTIP to 0.0.0.x (x != 0) and
// appends the host name and a NUL, so the proxy resolves it. The reply is 8
// bytes: VN=0, CD (90 granted, 91 rejected or failed, 92 and 93 identd
// failures), DSTPORT, DSTIP.
type socks4Dialer struct {
	proxyAddr string // host:port of the proxy
	user      string // USERID; SOCKS4 carries no password
	remoteDNS bool   // SOCKS4a: let the proxy resolve names
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	lookup    func(ctx context.Context, host string) ([]netip.Addr, error)
}

// socks4 reply codes.
const (
	socks4Granted       = 90
	socks4Rejected      = 91
	socks4NoIdentd      = 92
	socks4IdentMismatch = 93
)

// maxSocks4Host bounds the host name a SOCKS4a request carries.
const maxSocks4Host = 255

type socksAddr string

func (a socksAddr) Network() string { return "tcp" }
func (a socksAddr) String() string  { return string(a) }

// DialContext connects to addr (host:port) through the proxy. Errors are
// *net.OpError with Op "socks4" or "socks4a".
func (d *socks4Dialer) DialContext(ctx context.Context, network, addr string) (_ net.Conn, err error) {
	op := "socks4"
	if d.remoteDNS {
		op = "socks4a"
	}
	defer func() {
		if err != nil {
			err = &net.OpError{Op: op, Net: network, Source: socksAddr(d.proxyAddr), Addr: socksAddr(addr), Err: err}
		}
	}()
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("network %q not supported", network)
	}
	req, err := d.request(ctx, addr)
	if err != nil {
		return nil, err
	}
	conn, err := d.dial(ctx, "tcp", d.proxyAddr)
	if err != nil {
		return nil, err
	}
	if err := socks4Handshake(ctx, conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// request builds the CONNECT request for addr.
func (d *socks4Dialer) request(ctx context.Context, addr string) ([]byte, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("invalid port %q", portText)
	}
	if len(d.user) > 255 {
		return nil, errors.New("user name longer than 255 bytes")
	}
	for i := 0; i < len(d.user); i++ {
		if d.user[i] == 0 {
			return nil, errors.New("user name holds a NUL byte")
		}
	}
	req := make([]byte, 0, 9+len(d.user)+len(host)+1)
	req = append(req, 4, 1)
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	ip, ipErr := netip.ParseAddr(host)
	switch {
	case ipErr == nil:
		ip = ip.Unmap()
		if !ip.Is4() {
			return nil, fmt.Errorf("SOCKS4 cannot carry the IPv6 address %s", host)
		}
		a := ip.As4()
		req = append(req, a[:]...)
		req = append(req, d.user...)
		req = append(req, 0)
	case d.remoteDNS:
		if len(host) == 0 || len(host) > maxSocks4Host {
			return nil, fmt.Errorf("invalid host name %q", host)
		}
		for i := 0; i < len(host); i++ {
			if host[i] == 0 {
				return nil, errors.New("host name holds a NUL byte")
			}
		}
		req = append(req, 0, 0, 0, 1)
		req = append(req, d.user...)
		req = append(req, 0)
		req = append(req, host...)
		req = append(req, 0)
	default:
		addrs, err := d.lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		var v4 netip.Addr
		for _, a := range addrs {
			if a = a.Unmap(); a.Is4() {
				v4 = a
				break
			}
		}
		if !v4.IsValid() {
			return nil, fmt.Errorf("%s has no IPv4 address, and SOCKS4 carries only IPv4 (use socks4a:// to let the proxy resolve it)", host)
		}
		a := v4.As4()
		req = append(req, a[:]...)
		req = append(req, d.user...)
		req = append(req, 0)
	}
	return req, nil
}

// socks4Handshake sends req on conn and reads the reply, within ctx.
func socks4Handshake(ctx context.Context, conn net.Conn, req []byte) (err error) {
	// ctx's end (deadline included) cuts the handshake, through the
	// connection's deadline, and then the error is ctx's.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() || (err != nil && ctx.Err() != nil) {
			// ctx ended during the handshake and poisoned conn's deadline.
			err = ctx.Err()
		}
	}()
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	var resp [8]byte
	if _, err := io.ReadFull(conn, resp[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return errors.New("proxy closed the connection during the handshake")
		}
		return fmt.Errorf("read reply: %w", err)
	}
	if resp[0] != 0 && resp[0] != 4 {
		return fmt.Errorf("reply version %d, want 0: not a SOCKS4 proxy", resp[0])
	}
	switch resp[1] {
	case socks4Granted:
		return nil
	case socks4Rejected:
		return errors.New("request rejected or failed (91)")
	case socks4NoIdentd:
		return errors.New("request rejected: proxy cannot reach identd on the client (92)")
	case socks4IdentMismatch:
		return errors.New("request rejected: identd reports a different user id (93)")
	}
	return fmt.Errorf("unknown reply code %d", resp[1])
}
