package check

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// udp probes SOCKS5 UDP ASSOCIATE: one datagram to cfg.UDPEcho through the
// relay the proxy names, and its echo back. No library the project uses
// speaks UDP ASSOCIATE (golang.org/x/net/proxy is CONNECT only), so the
// few bytes of RFC 1928 §7 are written here.
func (p *prober) udp(ctx context.Context) ProtocolResult {
	pr := ProtocolResult{Protocol: ProtoSOCKS5UDP}
	if p.cfg.UDPEcho == "" {
		pr.Error = "not probed: the judge has no UDP echo"
		return pr
	}
	echo, err := netip.ParseAddrPort(p.cfg.UDPEcho)
	if err != nil {
		pr.Error = fmt.Sprintf("UDP echo %q: want ip:port", p.cfg.UDPEcho)
		return pr
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	start := time.Now()
	ctl, relay, err := p.associate(ctx)
	if err != nil {
		pr.Error = err.Error()
		if ctx.Err() != nil {
			pr.Error = fmt.Sprintf("no answer within %v (the proxy does not speak this protocol, or the judge is out of its reach)", p.cfg.Timeout)
		}
		return pr
	}
	defer ctl.Close()
	pr.ConnectMS = ms(time.Since(start))
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(relay))
	if err != nil {
		pr.Error = fmt.Sprintf("relay %v: %v", relay, err)
		return pr
	}
	defer uc.Close()
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	payload := []byte("duplex-proxy-check udp")
	a := echo.Addr().Unmap()
	dg := []byte{0, 0, 0, 1}
	if !a.Is4() {
		dg[3] = 4
	}
	dg = append(dg, a.AsSlice()...)
	dg = binary.BigEndian.AppendUint16(dg, echo.Port())
	dg = append(dg, payload...)
	if _, err := uc.Write(dg); err != nil {
		pr.Error = fmt.Sprintf("send datagram: %v", err)
		return pr
	}
	buf := make([]byte, 2048)
	n, err := uc.Read(buf)
	if err != nil {
		pr.Error = fmt.Sprintf("no datagram came back within %v", p.cfg.Timeout)
		return pr
	}
	pr.TTFBMS = ms(time.Since(start))
	if !bytes.HasSuffix(buf[:n], payload) {
		pr.Error = fmt.Sprintf("datagram came back changed: %q", buf[:n])
		return pr
	}
	pr.OK = true
	pr.Transports = []TransportResult{{Transport: TransportUDP, Status: StatusOK}}
	return pr
}

// associate runs the SOCKS5 greeting (with RFC 1929 credentials when the
// target has them) and UDP ASSOCIATE, and returns the control connection
// and the relay address.
func (p *prober) associate(ctx context.Context) (net.Conn, netip.AddrPort, error) {
	c, err := p.cfg.Dial(ctx, "tcp", p.t.URL.Host)
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (net.Conn, netip.AddrPort, error) {
		c.Close()
		return nil, netip.AddrPort{}, err
	}
	user, pass := p.credentials()
	method := byte(0)
	if user != "" {
		method = 2
		if len(user) > 255 || len(pass) > 255 {
			return fail(errors.New("credentials longer than 255 bytes"))
		}
	}
	if _, err := c.Write([]byte{5, 1, method}); err != nil {
		return fail(err)
	}
	var b [4]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return fail(fmt.Errorf("socks5 greeting: %w", err))
	}
	if b[0] != 5 || b[1] != method {
		return fail(fmt.Errorf("socks5 proxy chose method %#x", b[1]))
	}
	if method == 2 {
		m := append([]byte{1, byte(len(user))}, user...)
		m = append(append(m, byte(len(pass))), pass...)
		if _, err := c.Write(m); err != nil {
			return fail(err)
		}
		if _, err := io.ReadFull(c, b[:2]); err != nil || b[1] != 0 {
			return fail(errors.New("socks5 proxy refused the credentials"))
		}
	}
	if _, err := c.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}); err != nil {
		return fail(err)
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return fail(fmt.Errorf("UDP ASSOCIATE reply: %w", err))
	}
	if b[1] != 0 {
		return fail(fmt.Errorf("UDP ASSOCIATE refused (reply %#x)", b[1]))
	}
	var ab []byte
	switch b[3] {
	case 1:
		ab = make([]byte, 4)
	case 4:
		ab = make([]byte, 16)
	default:
		return fail(fmt.Errorf("UDP ASSOCIATE reply address type %d", b[3]))
	}
	var port [2]byte
	if _, err := io.ReadFull(c, ab); err != nil {
		return fail(err)
	}
	if _, err := io.ReadFull(c, port[:]); err != nil {
		return fail(err)
	}
	a, _ := netip.AddrFromSlice(ab)
	if a.IsUnspecified() {
		// "Any address": the relay is on the proxy's host.
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			a = ap.Addr()
		}
	}
	c.SetDeadline(time.Time{})
	return c, netip.AddrPortFrom(a.Unmap(), binary.BigEndian.Uint16(port[:])), nil
}
