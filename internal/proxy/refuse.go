package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// refusal is a connection cap that turned a client away on accept. The
// connection is still served up to its request, so the answer can say why
// in the client's own protocol (docs/proxy.md, "Refusals").
type refusal int

const (
	refuseNone              refusal = iota
	refuseMaxConns                  // Config.MaxConns: the server is full
	refuseMaxConnsPerClient         // Config.MaxConnsPerClient: this client IP is
	numRefusals
)

// String is the access-log outcome and the reason label of
// duplex_proxy_connections_refused_total.
func (r refusal) String() string {
	switch r {
	case refuseMaxConns:
		return "max_conns"
	case refuseMaxConnsPerClient:
		return "max_conns_per_client"
	}
	return "none"
}

// outcome is the access-log outcome of a connection r refused.
func (r refusal) outcome() outcome {
	if r == refuseMaxConnsPerClient {
		return outcomeMaxConnsPerClient
	}
	return outcomeMaxConns
}

// httpStatus is the status a refused HTTP client gets: 429 when it is the
// client's own share that is used up, 503 when the whole server is full.
func (r refusal) httpStatus() int {
	if r == refuseMaxConnsPerClient {
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

// message tells a person which limit was hit.
func (r refusal) message(limit int) string {
	switch r {
	case refuseMaxConnsPerClient:
		return fmt.Sprintf("too many open connections from this client address (limit %d)", limit)
	case refuseMaxConns:
		return fmt.Sprintf("too many open connections to this proxy (limit %d)", limit)
	}
	return ""
}

// limit is the configured cap r refers to.
func (s *Server) limit(r refusal) int {
	if r == refuseMaxConnsPerClient {
		return s.cfg.MaxConnsPerClient
	}
	return s.cfg.MaxConns
}

// retryAfterSeconds is the Retry-After a refused HTTP client gets: a
// connection slot frees as soon as any tunnel ends, so soon is right.
const retryAfterSeconds = 1

// maxRefusing bounds the refused connections being answered at once.
// Beyond it a refused connection is closed without an answer (still
// counted), so a flood over the caps costs a bounded number of goroutines.
const maxRefusing = 128

// refusalHandshakeTimeout bounds how long a refused connection may take to
// send its request; HandshakeTimeout applies when it is shorter.
const refusalHandshakeTimeout = 2 * time.Second

// httpRefusal is the JSON body of every answer the proxy itself makes to
// an HTTP client: error is the access-log outcome, message is for people,
// limit is the cap that was hit (caps only).
type httpRefusal struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Limit   int    `json:"limit,omitempty"`
}

// writeHTTPError answers a request the proxy refuses, with a JSON body,
// and marks the connection for closing. code is the access-log outcome.
func writeHTTPError(w io.Writer, status int, code, msg string, extra []string) error {
	return writeHTTPRefusal(w, status, httpRefusal{Error: code, Message: msg}, extra)
}

func writeHTTPRefusal(w io.Writer, status int, body httpRefusal, extra []string) error {
	js, _ := json.Marshal(body)
	js = append(js, '\n')
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(js)) + "\r\nConnection: close\r\n\r\n")
	b.Write(js)
	_, err := io.WriteString(w, b.String())
	return err
}

// refuseHTTP answers an HTTP client refused by a cap and logs it.
func (s *Server) refuseHTTP(c *conn, l *tunnelLog) {
	r := c.refusal
	writeHTTPRefusal(c.nc, r.httpStatus(), httpRefusal{Error: r.String(), Message: r.message(s.limit(r)), Limit: s.limit(r)},
		[]string{"Retry-After: " + strconv.Itoa(retryAfterSeconds)})
	lingerClose(c.nc)
	l.outcome = r.outcome()
	s.logTunnel(l)
}
