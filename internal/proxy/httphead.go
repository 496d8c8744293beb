package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// httpError is a request the proxy refuses, with the status it answers.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

func badRequest(format string, a ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

var errHeaderTooLarge = &httpError{http.StatusRequestHeaderFieldsTooLarge, "request head too large"}

// requestHead is a parsed and validated HTTP/1.x request head.
type requestHead struct {
	method, target string
	minor          int // HTTP/1.minor
	header         http.Header
	// contentLength is the body length, or -1 without Content-Length.
	contentLength int64
	chunked       bool
}

// readRequestHead reads one request head of at most max bytes from br and
// validates it strictly: a proxy that parses framing differently from the
// server behind it is how request smuggling happens, so anything
// ambiguous — Content-Length with Transfer-Encoding, several
// Content-Length fields, a transfer coding other than chunked, obs-fold
// continuation lines, bare CR or LF, whitespace before a colon, control
// characters — is refused with 400.
func readRequestHead(br *bufio.Reader, max int) (*requestHead, error) {
	budget := max
	var line []byte
	var err error
	// RFC 9112 §2.2: ignore at least one empty line before the request.
	for range 3 {
		line, err = readHeadLine(br, &budget)
		if err != nil {
			return nil, err
		}
		if len(line) > 0 {
			break
		}
	}
	if len(line) == 0 {
		return nil, badRequest("empty request line")
	}
	h := &requestHead{header: http.Header{}, contentLength: -1}
	if err := h.parseRequestLine(string(line)); err != nil {
		return nil, err
	}
	for {
		line, err = readHeadLine(br, &budget)
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, badRequest("obsolete line folding")
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return nil, badRequest("malformed header line")
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenChar(c) {
				return nil, badRequest("invalid header name %q", name)
			}
		}
		value := bytes.Trim(line[colon+1:], " \t")
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return nil, badRequest("control character in header %q", name)
			}
		}
		key := textproto.CanonicalMIMEHeaderKey(string(name))
		h.header[key] = append(h.header[key], string(value))
	}
	return h, h.checkFraming()
}

// readHeadLine reads one CRLF-terminated line, without the CRLF, charging
// its length to budget.
func readHeadLine(br *bufio.Reader, budget *int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		*budget -= len(frag)
		if *budget < 0 {
			return nil, errHeaderTooLarge
		}
		if err == nil {
			if line == nil {
				line = frag
			} else {
				line = append(line, frag...)
			}
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		line = append(line, frag...)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, badRequest("line not terminated by CRLF")
	}
	line = line[:len(line)-2]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, badRequest("bare CR")
	}
	return line, nil
}

func (h *requestHead) parseRequestLine(line string) error {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" {
		return badRequest("malformed request line")
	}
	for i := 0; i < len(method); i++ {
		if !isTokenChar(method[i]) {
			return badRequest("invalid method")
		}
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f {
			return badRequest("invalid request target")
		}
	}
	switch proto {
	case "HTTP/1.1":
		h.minor = 1
	case "HTTP/1.0":
		h.minor = 0
	default:
		if len(proto) == 8 && strings.HasPrefix(proto, "HTTP/") && proto[6] == '.' &&
			isDigit(proto[5]) && isDigit(proto[7]) {
			return &httpError{http.StatusHTTPVersionNotSupported, "HTTP version not supported"}
		}
		return badRequest("malformed HTTP version")
	}
	h.method, h.target = method, target
	return nil
}

// checkFraming enforces one unambiguous body length.
func (h *requestHead) checkFraming() error {
	if len(h.header["Host"]) > 1 {
		return badRequest("several Host fields")
	}
	if h.minor == 1 && len(h.header["Host"]) == 0 {
		return badRequest("HTTP/1.1 request without Host")
	}
	cl := h.header["Content-Length"]
	te := h.header["Transfer-Encoding"]
	switch {
	case len(te) > 0 && len(cl) > 0:
		return badRequest("both Content-Length and Transfer-Encoding")
	case len(cl) > 1:
		return badRequest("several Content-Length fields")
	case len(cl) == 1:
		v := cl[0]
		if v == "" || len(v) > 18 {
			return badRequest("invalid Content-Length")
		}
		for i := 0; i < len(v); i++ {
			if !isDigit(v[i]) {
				return badRequest("invalid Content-Length")
			}
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return badRequest("invalid Content-Length")
		}
		h.contentLength = n
	case len(te) > 0:
		if h.minor == 0 {
			return badRequest("Transfer-Encoding in HTTP/1.0")
		}
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			return badRequest("unsupported Transfer-Encoding")
		}
		h.chunked = true
	}
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isTokenChar reports whether c may appear in an RFC 9110 token.
func isTokenChar(c byte) bool {
	if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
