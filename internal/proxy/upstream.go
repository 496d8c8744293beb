package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// dialUpstreams connects to addr (a checked "ip:port") through the
// upstream proxies, starting with the next one in round-robin order and
// skipping any that fails. Upstreams the health probes took out of
// rotation are skipped too, unless every one is out: then all are tried.
func (s *Server) dialUpstreams(ctx context.Context, addr string) (net.Conn, error) {
	n := len(s.cfg.Upstreams)
	start := int(s.rr.Add(1)-1) % n
	order := make([]int, 0, n)
	for i := range n {
		if j := (start + i) % n; !s.health.isDown(j) {
			order = append(order, j)
		}
	}
	if len(order) == 0 {
		for i := range n {
			order = append(order, (start+i)%n)
		}
	}
	var errs []error
	for _, j := range order {
		u := s.cfg.Upstreams[j]
		c, err := s.dialVia(ctx, u, addr)
		if err == nil {
			return c, nil
		}
		s.metrics.upstreamFailures.Add(1)
		errs = append(errs, fmt.Errorf("via %s: %w", u.Redacted(), err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, &dialError{failUpstream, errors.Join(errs...)}
}

// dialVia opens a tunnel to addr through the upstream proxy u.
func (s *Server) dialVia(ctx context.Context, u *url.URL, addr string) (net.Conn, error) {
	c, err := s.cfg.Dial(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	// The handshake obeys ctx: closing the conn unblocks it.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	var out net.Conn
	switch u.Scheme {
	case "http":
		out, err = httpConnect(c, u, addr)
	default:
		out, err = socks5Connect(c, u, addr)
	}
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return out, nil
}

// httpConnect asks the HTTP proxy on c for a CONNECT tunnel to addr.
func httpConnect(c net.Conn, u *url.URL, addr string) (net.Conn, error) {
	req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	if u.User != nil {
		p, _ := u.User.Password()
		req += "Proxy-Authorization: Basic " +
			base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+p)) + "\r\n"
	}
	req += "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return nil, fmt.Errorf("write CONNECT: %w", err)
	}
	br := bufio.NewReaderSize(c, 1024)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return nil, fmt.Errorf("read CONNECT response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("CONNECT answered %s", resp.Status)
	}
	if n := br.Buffered(); n > 0 {
		// The origin spoke first and its bytes came in with the answer.
		b, _ := br.Peek(n)
		return &prefixConn{Conn: c, prefix: append([]byte(nil), b...)}, nil
	}
	return c, nil
}

// socks5Connect runs an RFC 1928 CONNECT (with RFC 1929 auth if u has a
// user) on c for addr, an "ip:port".
func socks5Connect(c net.Conn, u *url.URL, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	method := byte(0x00)
	if u.User != nil {
		method = 0x02
	}
	if _, err := c.Write([]byte{5, 1, method}); err != nil {
		return nil, fmt.Errorf("write greeting: %w", err)
	}
	var b [4]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return nil, fmt.Errorf("read method: %w", err)
	}
	if b[0] != 5 || b[1] != method {
		return nil, fmt.Errorf("upstream chose method %#x", b[1])
	}
	if method == 0x02 {
		user := u.User.Username()
		pass, _ := u.User.Password()
		if len(user) > 255 || len(pass) > 255 {
			return nil, errors.New("credentials too long")
		}
		m := append([]byte{1, byte(len(user))}, user...)
		m = append(m, byte(len(pass)))
		m = append(m, pass...)
		if _, err := c.Write(m); err != nil {
			return nil, fmt.Errorf("write auth: %w", err)
		}
		if _, err := io.ReadFull(c, b[:2]); err != nil {
			return nil, fmt.Errorf("read auth status: %w", err)
		}
		if b[1] != 0 {
			return nil, errors.New("upstream rejected credentials")
		}
	}
	req := []byte{5, 1, 0}
	a := ap.Addr().Unmap()
	if a.Is4() {
		req = append(req, 1)
	} else {
		req = append(req, 4)
	}
	req = append(req, a.AsSlice()...)
	req = append(req, byte(ap.Port()>>8), byte(ap.Port()))
	if _, err := c.Write(req); err != nil {
		return nil, fmt.Errorf("write request: %w", err)
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	if b[0] != 5 {
		return nil, fmt.Errorf("bad reply version %d", b[0])
	}
	if b[1] != 0 {
		return nil, fmt.Errorf("upstream replied %#x", b[1])
	}
	var skip int
	switch b[3] {
	case 1:
		skip = 4 + 2
	case 4:
		skip = 16 + 2
	case 3:
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return nil, fmt.Errorf("read reply: %w", err)
		}
		skip = int(b[0]) + 2
	default:
		return nil, fmt.Errorf("bad reply address type %d", b[3])
	}
	if _, err := io.CopyN(io.Discard, c, int64(skip)); err != nil {
		return nil, fmt.Errorf("read reply: %w", err)
	}
	return c, nil
}

// prefixConn is a conn whose first reads return bytes already taken off
// the wire.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
