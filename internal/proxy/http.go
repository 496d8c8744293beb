package proxy

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// hopByHop are the headers that describe one connection, never forwarded
// (RFC 9110 §7.6.1), plus the legacy Proxy-Connection.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// identifying are the client-sent headers elite anonymity drops.
var identifying = []string{
	"X-Forwarded-For", "Forwarded", "Via", "X-Real-Ip", "X-Forwarded-Host",
	"X-Forwarded-Proto", "X-Client-Ip", "Client-Ip", "True-Client-Ip",
	"X-Cluster-Client-Ip", "Forwarded-For", "X-Originating-Ip",
	"X-Remote-Ip", "X-Remote-Addr", "X-Proxyuser-Ip",
}

const viaValue = "1.1 duplex"

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// origin is the connection to the last origin a keep-alive client used.
type origin struct {
	t    target
	addr string
	nc   net.Conn
	br   *bufio.Reader // reads through lim
	lim  *readLimit
}

// readLimit fails reads past a budget: it bounds what an origin may send
// as a response head (net/http's ReadResponse has no limit of its own).
type readLimit struct {
	r net.Conn
	n int64 // bytes left; a negative number means no limit
}

var errResponseHeadTooLarge = errors.New("response head too large")

func (l *readLimit) Read(p []byte) (int, error) {
	if l.n == 0 {
		return 0, errResponseHeadTooLarge
	}
	if l.n > 0 && int64(len(p)) > l.n {
		p = p[:l.n]
	}
	k, err := l.r.Read(p)
	if l.n > 0 {
		l.n -= int64(k)
	}
	return k, err
}

func (o *origin) close() {
	if o != nil {
		o.nc.Close()
		putReader(o.br)
	}
}

func (s *Server) serveHTTP(c *conn, first byte) {
	br := getReader(io.MultiReader(bytes.NewReader([]byte{first}), c.nc))
	var o *origin
	defer func() {
		o.close()
		putReader(br)
	}()
	for n := 0; ; n++ {
		if n > 0 {
			c.state.Store(stateIdle)
			if s.cfg.IdleTimeout > 0 {
				c.nc.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
			} else {
				c.nc.SetDeadline(time.Time{})
			}
			if _, err := br.Peek(1); err != nil || s.shuttingDown() {
				return
			}
			c.state.Store(stateHandshake)
			c.nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
		}
		h, err := readRequestHead(br, s.cfg.MaxHeaderBytes)
		if err != nil {
			var he *httpError
			if errors.As(err, &he) {
				writeHTTPError(c.nc, he.status, he.msg, nil)
				lingerClose(c.nc)
			}
			if n == 0 || he != nil {
				s.logHandshakeFailure(c, "http", err)
			}
			return
		}
		l := &tunnelLog{proto: "http", client: c.nc.RemoteAddr(), target: h.target, start: time.Now()}
		if !s.authorizeHTTP(h, l) {
			writeHTTPError(c.nc, http.StatusProxyAuthRequired, "proxy authentication required",
				[]string{`Proxy-Authenticate: Basic realm="duplex"`})
			lingerClose(c.nc)
			l.outcome = outcomeAuthFailed
			s.logTunnel(l)
			return
		}
		if h.method == http.MethodConnect {
			s.serveCONNECT(c, br, h, l)
			return
		}
		var keep bool
		keep, o = s.forward(c, br, h, l, o)
		if !keep {
			return
		}
	}
}

// lingerClose half-closes nc after an error answer and reads what the
// client still sends for a moment, so closing with unread bytes does not
// reset the connection before the client has read the answer.
func lingerClose(nc net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, nc, 256<<10)
}

// authorizeHTTP checks Proxy-Authorization when credentials are on.
func (s *Server) authorizeHTTP(h *requestHead, l *tunnelLog) bool {
	if len(s.cfg.Credentials) == 0 {
		return true
	}
	v := h.header.Get("Proxy-Authorization")
	scheme, enc, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return false
	}
	user, pass, ok := strings.Cut(string(dec), ":")
	if !ok {
		return false
	}
	l.user = user
	return s.checkCredentials(user, pass)
}

// writeHTTPError answers a request the proxy refuses and marks the
// connection for closing.
func writeHTTPError(w io.Writer, status int, msg string, extra []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	body := msg + "\n"
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	_, err := io.WriteString(w, b.String())
	return err
}

func (s *Server) serveCONNECT(c *conn, br *bufio.Reader, h *requestHead, l *tunnelLog) {
	l.proto = "connect"
	t, err := parseTarget(h.target)
	if err != nil {
		writeHTTPError(c.nc, http.StatusBadRequest, "CONNECT needs host:port", nil)
		l.outcome, l.err = outcomeBadRequest, err
		s.logTunnel(l)
		return
	}
	l.target = t.String()
	pending := takeBuffered(br)
	s.tunnel(c, l, t, pending, func(_ net.Addr, f failure, err error) error {
		if err != nil {
			return writeHTTPError(c.nc, f.httpStatus(), f.String(), nil)
		}
		_, werr := io.WriteString(c.nc, "HTTP/1.1 200 Connection established\r\n\r\n")
		return werr
	})
}

// forwardTarget parses an absolute-form http:// request target.
func forwardTarget(h *requestHead) (target, *url.URL, error) {
	if !strings.HasPrefix(h.target, "/") {
		u, err := url.ParseRequestURI(h.target)
		if err == nil && strings.EqualFold(u.Scheme, "http") && u.Host != "" {
			hostport := u.Host
			if u.Port() == "" {
				hostport = net.JoinHostPort(u.Hostname(), "80")
			}
			t, err := parseTarget(hostport)
			if err != nil {
				return t, nil, badRequest("bad authority: %v", err)
			}
			return t, u, nil
		}
		if err == nil && u.Scheme != "" && !strings.EqualFold(u.Scheme, "http") {
			return target{}, nil, badRequest("scheme %q not forwarded; use CONNECT", u.Scheme)
		}
	}
	return target{}, nil, badRequest("this is a proxy: send an absolute http:// URL or CONNECT")
}

// connectionTokens returns the lower-cased tokens of all Connection fields.
func connectionTokens(hd http.Header) []string {
	var toks []string
	for _, v := range hd["Connection"] {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				toks = append(toks, strings.ToLower(t))
			}
		}
	}
	return toks
}

func hasToken(toks []string, t string) bool {
	for _, x := range toks {
		if x == t {
			return true
		}
	}
	return false
}

// removeHopByHop deletes the hop-by-hop headers of hd, including those
// its Connection fields name.
func removeHopByHop(hd http.Header) {
	for _, t := range connectionTokens(hd) {
		hd.Del(t)
	}
	for _, k := range hopByHop {
		delete(hd, k)
	}
}

// isWebSocketUpgrade reports whether the request asks to switch to
// WebSocket.
func isWebSocketUpgrade(h *requestHead) bool {
	if !hasToken(connectionTokens(h.header), "upgrade") {
		return false
	}
	for _, v := range h.header["Upgrade"] {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "websocket") {
				return true
			}
		}
	}
	return false
}

// forward relays one absolute-form request to its origin and streams the
// response back. It returns whether the client connection may carry
// another request, and the origin connection to keep for it.
func (s *Server) forward(c *conn, br *bufio.Reader, h *requestHead, l *tunnelLog, o *origin) (bool, *origin) {
	c.state.Store(stateActive)
	s.metrics.active.Add(1)
	defer s.metrics.active.Add(-1)
	// The request body is written by its own goroutine so an origin that
	// answers early (or sends 100 Continue) is read meanwhile.
	bodyc := make(chan error, 1)
	bodyRunning := false
	waitBody := func() error {
		if !bodyRunning {
			return nil
		}
		bodyRunning = false
		return <-bodyc
	}
	fail := func(status int, out outcome, err error) (bool, *origin) {
		writeHTTPError(c.nc, status, out.String(), nil)
		o.close()
		if bodyRunning {
			c.nc.Close()
			waitBody()
		}
		l.outcome, l.err = out, err
		s.logTunnel(l)
		return false, nil
	}
	t, u, err := forwardTarget(h)
	if err != nil {
		return fail(http.StatusBadRequest, outcomeBadRequest, err)
	}
	l.target = t.String()
	upgrade := isWebSocketUpgrade(h)
	clientKeep := h.minor == 1 && !hasToken(connectionTokens(h.header), "close") && !upgrade

	// Outgoing head.
	out := h.header.Clone()
	wsUpgrade := out["Upgrade"]
	removeHopByHop(out)
	if upgrade {
		out["Connection"] = []string{"Upgrade"}
		out["Upgrade"] = wsUpgrade
	}
	switch s.cfg.Anonymity {
	case Elite:
		for _, k := range identifying {
			delete(out, k)
		}
	case Anonymous:
		out["Via"] = append(out["Via"], viaValue)
	case Transparent:
		out["Via"] = append(out["Via"], viaValue)
		if ip := c.ip; ip.IsValid() {
			if prior := out.Values("X-Forwarded-For"); len(prior) > 0 {
				out.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+ip.String())
			} else {
				out.Set("X-Forwarded-For", ip.String())
			}
		}
	}
	path := u.RequestURI()
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\n", h.method, path, u.Host)
	delete(out, "Host")
	switch {
	case h.chunked:
		out["Transfer-Encoding"] = []string{"chunked"}
	case h.contentLength >= 0:
		out["Content-Length"] = []string{strconv.FormatInt(h.contentLength, 10)}
	}
	out.Write(&head)
	head.WriteString("\r\n")

	// Origin connection: reuse the last one if it is for the same target.
	if o != nil && o.t != t {
		o.close()
		o = nil
	}
	hasBody := h.chunked || h.contentLength > 0
	defer func() {
		if bodyRunning { // an early return: this connection is done
			c.nc.Close()
			<-bodyc
		}
	}()
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		reused := o != nil
		if o == nil {
			c.nc.SetDeadline(time.Now().Add(s.cfg.DialTimeout + s.cfg.HandshakeTimeout))
			nc, ap, err := s.dialTarget(s.ctx, t)
			if err != nil {
				f := failureOf(err)
				return fail(f.httpStatus(), f.outcome(), err)
			}
			lim := &readLimit{r: nc, n: -1}
			o = &origin{t: t, addr: ap.String(), nc: nc, br: getReader(lim), lim: lim}
		}
		l.addr = o.addr
		c.nc.SetDeadline(time.Time{})
		// A kept-alive origin connection may have been closed by the
		// origin meanwhile; a request without a body that found it dead
		// before any answer is sent once more on a fresh connection.
		retry := reused && !hasBody && attempt == 0
		s.setIdleDeadline(o.nc)
		if _, err := o.nc.Write(head.Bytes()); err != nil {
			if retry {
				o.close()
				o = nil
				continue
			}
			return fail(http.StatusBadGateway, outcomeOriginWriteFailed, err)
		}
		if hasBody {
			bodyRunning = true
			oc := o.nc
			go func() {
				n, err := s.copyRequestBody(oc, c.nc, br, h)
				l.up = n
				bodyc <- err
			}()
		}
		resp, err = s.readResponse(c, o, h)
		if err == nil {
			break
		}
		if errors.Is(err, errClientGone) {
			o.close()
			return false, nil
		}
		if retry && (isEOF(err) || errors.Is(err, syscall.ECONNRESET)) {
			o.close()
			o = nil
			continue
		}
		return fail(http.StatusBadGateway, outcomeOriginFailed, err)
	}
	l.status = resp.StatusCode

	if resp.StatusCode == http.StatusSwitchingProtocols {
		if !upgrade {
			return fail(http.StatusBadGateway, outcomeOriginFailed, errors.New("unrequested 101"))
		}
		if err := waitBody(); err != nil {
			o.close()
			return false, nil
		}
		var rh bytes.Buffer
		fmt.Fprintf(&rh, "HTTP/1.1 %s\r\n", resp.Status)
		resp.Header.Write(&rh)
		rh.WriteString("\r\n")
		s.setIdleDeadline(c.nc)
		if _, err := c.nc.Write(rh.Bytes()); err != nil {
			o.close()
			l.outcome, l.err = outcomeClientClosed, err
			s.logTunnel(l)
			return false, nil
		}
		l.proto = "websocket"
		clientPending := takeBuffered(br)
		originPending := takeBuffered(o.br)
		c.nc.SetDeadline(time.Time{})
		o.nc.SetDeadline(time.Time{})
		up, down, err := runPump(c.nc, o.nc, clientPending, originPending, s.cfg.IdleTimeout, &s.metrics.bytesUp, &s.metrics.bytesDown)
		o.nc.Close()
		putReader(o.br)
		s.metrics.bytesUp.Add(l.up) // a request body, if any; the pump counts the rest
		l.up += up
		l.down = down
		l.bytesCounted = true
		l.outcome, l.err = tunnelOutcome(err), err
		s.logTunnel(l)
		return false, nil
	}

	// Response head.
	removeHopByHop(resp.Header)
	if s.cfg.Anonymity != Elite {
		resp.Header["Via"] = append(resp.Header["Via"], viaValue)
	}
	noBody := h.method == http.MethodHead || resp.StatusCode == 204 || resp.StatusCode == 304
	chunked := false
	switch {
	case noBody:
	case resp.ContentLength >= 0:
		resp.Header["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	case h.minor == 1:
		chunked = true
		resp.Header["Transfer-Encoding"] = []string{"chunked"}
		delete(resp.Header, "Content-Length")
	default:
		clientKeep = false // close-delimited for HTTP/1.0
	}
	if s.shuttingDown() {
		clientKeep = false
	}
	if !clientKeep {
		resp.Header["Connection"] = []string{"close"}
	}
	var rh bytes.Buffer
	fmt.Fprintf(&rh, "HTTP/1.1 %s\r\n", resp.Status)
	resp.Header.Write(&rh)
	rh.WriteString("\r\n")
	s.setIdleDeadline(c.nc)
	if _, err := c.nc.Write(rh.Bytes()); err != nil {
		// Close the origin's socket first: Close on a body from
		// ReadResponse reads it to its end, and an event stream has none.
		// Only then give its reader back (o.close).
		o.nc.Close()
		resp.Body.Close()
		o.close()
		c.nc.Close()
		waitBody() // it writes l.up
		l.outcome, l.err = outcomeClientClosed, err
		s.logTunnel(l)
		return false, nil
	}
	n, err := s.streamBody(c.nc, o.nc, resp.Body, chunked)
	l.down = n
	if err != nil {
		// Mid-body failure (the client left, say): the client sees a
		// truncated response. Close the origin's socket before the body,
		// whose Close would otherwise read an endless stream to its end;
		// only then give its reader back (o.close).
		o.nc.Close()
		resp.Body.Close()
		o.close()
		c.nc.Close()
		waitBody()
		l.outcome, l.err = outcomeStreamFailed, err
		s.logTunnel(l)
		return false, nil
	}
	if err := waitBody(); err != nil {
		o.close()
		l.outcome, l.err = outcomeClientBodyFailed, err
		s.logTunnel(l)
		return false, nil
	}
	l.outcome = outcomeOK
	s.logTunnel(l)
	if resp.Close || upgrade {
		o.close()
		o = nil
	}
	return clientKeep, o
}

// errClientGone means the client could not be written to.
var errClientGone = errors.New("client gone")

// readResponse reads the origin's final response, passing 1xx interim
// responses to HTTP/1.1 clients as they come.
func (s *Server) readResponse(c *conn, o *origin, h *requestHead) (*http.Response, error) {
	for {
		s.setIdleDeadline(o.nc)
		// The head may use MaxHeaderBytes beyond what is buffered already
		// (plus one buffer of read-ahead).
		o.lim.n = int64(o.br.Size() + s.cfg.MaxHeaderBytes)
		resp, err := http.ReadResponse(o.br, &http.Request{Method: h.method})
		o.lim.n = -1
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if h.minor == 1 {
			var ih bytes.Buffer
			fmt.Fprintf(&ih, "HTTP/1.1 %s\r\n", resp.Status)
			removeHopByHop(resp.Header)
			resp.Header.Write(&ih)
			ih.WriteString("\r\n")
			s.setIdleDeadline(c.nc)
			if _, err := c.nc.Write(ih.Bytes()); err != nil {
				return nil, fmt.Errorf("%w: %v", errClientGone, err)
			}
		}
	}
}

// setIdleDeadline sets both deadlines of nc an idle timeout from now.
func (s *Server) setIdleDeadline(nc net.Conn) {
	if s.cfg.IdleTimeout > 0 {
		nc.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
	} else {
		nc.SetDeadline(time.Time{})
	}
}

// copyRequestBody copies a request body from the client to the origin,
// re-chunking a chunked one (its trailers are dropped).
func (s *Server) copyRequestBody(dst net.Conn, client net.Conn, br *bufio.Reader, h *requestHead) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	if !h.chunked {
		return copyIdle(s, dst, client, io.LimitReader(br, h.contentLength), *bp, func(b []byte) error {
			_, err := dst.Write(b)
			return err
		}, h.contentLength)
	}
	cr := httputil.NewChunkedReader(br)
	cw := httputil.NewChunkedWriter(dst)
	n, err := copyIdle(s, dst, client, cr, *bp, func(b []byte) error {
		_, err := cw.Write(b)
		return err
	}, -1)
	if err != nil {
		return n, err
	}
	// Trailer section: skip it, bounded like a head.
	budget := s.cfg.MaxHeaderBytes
	for {
		line, err := readHeadLine(br, &budget)
		if err != nil {
			return n, err
		}
		if len(line) == 0 {
			break
		}
	}
	_, err = io.WriteString(dst, "0\r\n\r\n")
	return n, err
}

// copyIdle copies r through write, refreshing idle deadlines on the
// connections involved before every read.
func copyIdle(s *Server, a, b net.Conn, r io.Reader, buf []byte, write func([]byte) error, want int64) (int64, error) {
	var n int64
	for {
		s.setIdleDeadline(a)
		s.setIdleDeadline(b)
		m, err := r.Read(buf)
		if m > 0 {
			if werr := write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if err == io.EOF {
			if want >= 0 && n < want {
				return n, io.ErrUnexpectedEOF
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// streamBody copies a response body to the client as it arrives: every
// read from the origin is written out at once, so event streams and long
// polls pass through unbuffered.
func (s *Server) streamBody(client, originConn net.Conn, body io.Reader, chunked bool) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	if !chunked {
		return copyIdle(s, client, originConn, body, buf, func(b []byte) error {
			_, err := client.Write(b)
			return err
		}, -1)
	}
	var hdr [20]byte
	n, err := copyIdle(s, client, originConn, body, buf, func(b []byte) error {
		size := strconv.AppendInt(hdr[:0], int64(len(b)), 16)
		size = append(size, '\r', '\n')
		bufs := net.Buffers{size, b, []byte("\r\n")}
		_, err := bufs.WriteTo(client)
		return err
	}, -1)
	if err != nil {
		return n, err
	}
	_, err = io.WriteString(client, "0\r\n\r\n")
	return n, err
}
