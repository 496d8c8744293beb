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
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

func (s *Server) serveHTTP(c *conn, br *bufio.Reader) {
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
				writeHTTPError(c.nc, he.status, "bad_request", he.msg, nil)
				lingerClose(c.nc)
			}
			if n == 0 || he != nil {
				s.logHandshakeFailure(c, "http", err)
			}
			return
		}
		l := &tunnelLog{proto: "http", client: c.nc.RemoteAddr(), target: h.target, start: time.Now()}
		if h.method == http.MethodConnect {
			l.proto = "connect"
		}
		if c.refusal != refuseNone {
			s.refuseHTTP(c, l)
			return
		}
		if !s.authorizeHTTP(h, l) {
			writeHTTPError(c.nc, http.StatusProxyAuthRequired, "auth_failed", "proxy authentication required",
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

func (s *Server) serveCONNECT(c *conn, br *bufio.Reader, h *requestHead, l *tunnelLog) {
	l.proto = "connect"
	t, err := parseTarget(h.target)
	if err != nil {
		writeHTTPError(c.nc, http.StatusBadRequest, outcomeBadRequest.String(), "CONNECT needs host:port", nil)
		l.outcome, l.err = outcomeBadRequest, err
		s.logTunnel(l)
		return
	}
	l.target = t.String()
	pending := takeBuffered(br)
	s.tunnel(c, l, t, pending, func(_ net.Addr, f failure, err error) error {
		if err != nil {
			return writeHTTPError(c.nc, f.httpStatus(), f.String(), err.Error(), nil)
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
// another request, and the origin connection to keep for it. Its steps
// are the methods of forwarding below: the outgoing head, the origin
// connection (with the request sent and the response read), an upgrade
// relayed as a tunnel, or the response head and body.
func (s *Server) forward(c *conn, br *bufio.Reader, h *requestHead, l *tunnelLog, o *origin) (bool, *origin) {
	c.state.Store(stateActive)
	s.metrics.active.Add(1)
	defer s.metrics.active.Add(-1)
	f := &forwarding{s: s, c: c, br: br, h: h, l: l, o: o, bodyc: make(chan error, 1)}
	defer f.stopBody()
	t, u, err := forwardTarget(h)
	if err != nil {
		return f.fail(http.StatusBadRequest, outcomeBadRequest, err)
	}
	f.t = t
	l.target = t.String()
	f.upgrade = isWebSocketUpgrade(h)
	f.clientKeep = h.minor == 1 && !hasToken(connectionTokens(h.header), "close") && !f.upgrade

	head := f.outgoingHead(u)
	resp, done := f.roundTrip(head)
	if done {
		return false, nil
	}
	l.status = resp.StatusCode
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return f.relayUpgrade(resp)
	}
	return f.relayResponse(resp)
}

// forwarding is one forwarded request, as forward's steps share it. Only
// forward's goroutine uses it, but for the request-body goroutine, which
// reports on bodyc.
type forwarding struct {
	s  *Server
	c  *conn
	br *bufio.Reader
	h  *requestHead
	l  *tunnelLog
	o  *origin // the origin connection, nil until there is one
	t  target

	upgrade    bool // a WebSocket upgrade was asked for
	clientKeep bool // the client connection may carry another request

	// The request body is written by its own goroutine so an origin that
	// answers early (or sends 100 Continue) is read meanwhile.
	bodyc       chan error
	bodyRunning bool
}

// waitBody waits for the request-body goroutine, if it runs.
func (f *forwarding) waitBody() error {
	if !f.bodyRunning {
		return nil
	}
	f.bodyRunning = false
	return <-f.bodyc
}

// stopBody ends a request-body goroutine still running at an early
// return: this connection is done.
func (f *forwarding) stopBody() {
	if f.bodyRunning {
		f.c.nc.Close()
		<-f.bodyc
	}
}

// fail answers the client with status, before any response went out, and
// ends the request.
func (f *forwarding) fail(status int, out outcome, err error) (bool, *origin) {
	msg := out.String()
	var he *httpError
	if errors.As(err, &he) {
		msg = he.msg
	} else if err != nil {
		msg = err.Error()
	}
	writeHTTPError(f.c.nc, status, out.String(), msg, nil)
	f.o.close()
	if f.bodyRunning {
		f.c.nc.Close()
		f.waitBody()
	}
	return f.end(out, err)
}

// end logs the request's outcome; the client connection carries no more.
func (f *forwarding) end(out outcome, err error) (bool, *origin) {
	f.l.outcome, f.l.err = out, err
	f.s.logTunnel(f.l)
	return false, nil
}

// abandon ends a request whose response broke off after its head was
// due: the client sees a truncated response (or none). The origin's socket
// closes first: Close on a body from ReadResponse reads it to its end, and
// an event stream has none. Only then is its reader given back (o.close).
func (f *forwarding) abandon(resp *http.Response, out outcome, err error) (bool, *origin) {
	f.o.nc.Close()
	resp.Body.Close()
	f.o.close()
	f.c.nc.Close()
	f.waitBody() // it writes l.up
	return f.end(out, err)
}

// outgoingHead is the request head sent to the origin for u: hop-by-hop
// headers gone (an upgrade's kept), the anonymity level's headers, the
// body's framing.
func (f *forwarding) outgoingHead(u *url.URL) []byte {
	h := f.h
	out := h.header.Clone()
	wsUpgrade := out["Upgrade"]
	removeHopByHop(out)
	if f.upgrade {
		out["Connection"] = []string{"Upgrade"}
		out["Upgrade"] = wsUpgrade
	}
	switch f.s.cfg.Anonymity {
	case Elite:
		for _, k := range identifying {
			delete(out, k)
		}
	case Anonymous:
		out["Via"] = append(out["Via"], viaValue)
	case Transparent:
		out["Via"] = append(out["Via"], viaValue)
		if ip := f.c.ip; ip.IsValid() {
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
	return head.Bytes()
}

// roundTrip sends head (and the body, from its own goroutine) on the
// origin connection, reusing the last one if it is for the same target,
// and reads the final response. done means the request has ended (failed
// and logged, or the client gone) and resp is nil.
func (f *forwarding) roundTrip(head []byte) (resp *http.Response, done bool) {
	s, c, h, l, t := f.s, f.c, f.h, f.l, f.t
	if f.o != nil && f.o.t != t {
		f.o.close()
		f.o = nil
	}
	hasBody := h.chunked || h.contentLength > 0
	for attempt := 0; ; attempt++ {
		reused := f.o != nil
		if f.o == nil {
			c.nc.SetDeadline(time.Now().Add(s.cfg.DialTimeout + s.cfg.HandshakeTimeout))
			nc, ap, err := s.dialTarget(s.ctx, t)
			if err != nil {
				fl := failureOf(err)
				f.fail(fl.httpStatus(), fl.outcome(), err)
				return nil, true
			}
			lim := &readLimit{r: nc, n: -1}
			f.o = &origin{t: t, addr: ap.String(), nc: nc, br: getReader(lim), lim: lim}
		}
		o := f.o
		l.addr = o.addr
		c.nc.SetDeadline(time.Time{})
		// A kept-alive origin connection may have been closed by the
		// origin meanwhile; a request without a body that found it dead
		// before any answer is sent once more on a fresh connection.
		retry := reused && !hasBody && attempt == 0
		s.setIdleDeadline(o.nc)
		if _, err := o.nc.Write(head); err != nil {
			if retry {
				o.close()
				f.o = nil
				continue
			}
			f.fail(http.StatusBadGateway, outcomeOriginWriteFailed, err)
			return nil, true
		}
		if hasBody {
			f.bodyRunning = true
			oc := o.nc
			go func() {
				n, err := s.copyRequestBody(oc, c.nc, f.br, h)
				l.up = n
				f.bodyc <- err
			}()
		}
		resp, err := s.readResponse(c, o, h)
		if err == nil {
			return resp, false
		}
		if errors.Is(err, errClientGone) {
			o.close()
			return nil, true
		}
		if retry && (isEOF(err) || errors.Is(err, syscall.ECONNRESET)) {
			o.close()
			f.o = nil
			continue
		}
		f.fail(http.StatusBadGateway, outcomeOriginFailed, err)
		return nil, true
	}
}

// relayUpgrade passes the origin's 101 to the client and relays the
// connection as a tunnel (proto websocket) until either side ends it.
func (f *forwarding) relayUpgrade(resp *http.Response) (bool, *origin) {
	s, c, l, o := f.s, f.c, f.l, f.o
	if !f.upgrade {
		return f.fail(http.StatusBadGateway, outcomeOriginFailed, errors.New("unrequested 101"))
	}
	if err := f.waitBody(); err != nil {
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
		return f.end(outcomeClientClosed, err)
	}
	l.proto = "websocket"
	clientPending := takeBuffered(f.br)
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
	return f.end(tunnelOutcome(err), err)
}

// relayResponse writes the response head and streams the body to the
// client, then settles whether either connection is kept.
func (f *forwarding) relayResponse(resp *http.Response) (bool, *origin) {
	s, c, l := f.s, f.c, f.l
	chunked := f.responseHead(resp)
	var rh bytes.Buffer
	fmt.Fprintf(&rh, "HTTP/1.1 %s\r\n", resp.Status)
	resp.Header.Write(&rh)
	rh.WriteString("\r\n")
	s.setIdleDeadline(c.nc)
	if _, err := c.nc.Write(rh.Bytes()); err != nil {
		return f.abandon(resp, outcomeClientClosed, err)
	}
	gone, stopWatch := f.watchClientGone(resp.ContentLength < 0)
	n, err := s.streamBody(c.nc, f.o.nc, resp.Body, chunked)
	stopWatch()
	l.down = n
	if err != nil {
		if gone.Load() {
			return f.abandon(resp, outcomeClientClosed, errClientGone)
		}
		// Mid-body failure (the client left, say): the client sees a
		// truncated response.
		return f.abandon(resp, outcomeStreamFailed, err)
	}
	if err := f.waitBody(); err != nil {
		f.o.close()
		return f.end(outcomeClientBodyFailed, err)
	}
	f.l.outcome = outcomeOK
	s.logTunnel(l)
	o := f.o
	if resp.Close || f.upgrade {
		o.close()
		o = nil
	}
	return f.clientKeep, o
}

// watchClientGone ends the origin connection when the client leaves while
// the response body streams. A silent stream (an event stream between
// heartbeats) would otherwise hold both connections until the origin next
// writes, and Shutdown would wait for it. Only a body of unknown length
// (streaming: chunked or close-delimited) is watched, so a plain response
// pays no goroutine for it; and only while nothing else reads from the
// client (no request body in flight). A pipelined request it sees stays in
// the buffer for the next round. gone reports that the client left; stop
// ends the watch and waits for it, after which the connection's deadlines
// are the caller's to set again (serveHTTP sets them before every request).
func (f *forwarding) watchClientGone(streaming bool) (gone *atomic.Bool, stop func()) {
	gone = new(atomic.Bool)
	if !streaming || f.bodyRunning {
		return gone, func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := f.br.Peek(1); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			gone.Store(true)
			f.o.nc.Close()
		}
	}()
	return gone, func() {
		f.c.nc.SetReadDeadline(time.Now())
		<-done
	}
}

// responseHead rewrites resp's head for the client: hop-by-hop headers
// gone, Via, the body's framing (chunked for an HTTP/1.1 client when the
// length is unknown), Connection: close when the client connection ends.
// It reports whether the body is to be chunked.
func (f *forwarding) responseHead(resp *http.Response) (chunked bool) {
	h := f.h
	removeHopByHop(resp.Header)
	if f.s.cfg.Anonymity != Elite {
		resp.Header["Via"] = append(resp.Header["Via"], viaValue)
	}
	noBody := h.method == http.MethodHead || resp.StatusCode == 204 || resp.StatusCode == 304
	switch {
	case noBody:
	case resp.ContentLength >= 0:
		resp.Header["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	case h.minor == 1:
		chunked = true
		resp.Header["Transfer-Encoding"] = []string{"chunked"}
		delete(resp.Header, "Content-Length")
	default:
		f.clientKeep = false // close-delimited for HTTP/1.0
	}
	if f.s.shuttingDown() {
		f.clientKeep = false
	}
	if !f.clientKeep {
		resp.Header["Connection"] = []string{"close"}
	}
	return chunked
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
