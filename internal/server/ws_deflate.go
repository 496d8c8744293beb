package server

import (
	"bytes"
	"compress/flate"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// permessage-deflate (RFC 7692), paid once per publication.
//
// Negotiation: the hub accepts the first permessage-deflate offer it can
// honour, always with server_no_context_takeover, so the frame it sends
// for a publication depends on the publication alone. That frame is made
// once (hub.Publication.Compressed) and written to every subscriber that
// negotiated compression: compressing costs per publication, not per
// delivery, and no connection holds deflate state for writing.
//
//   - server_no_context_takeover: answered, offered or not (§7.1.1.1).
//   - client_no_context_takeover: answered, offered or not, which
//     §7.1.1.2 lets a server do: the client compresses each message on its
//     own, so the reader keeps no 32 KiB inflate window per connection
//     between messages. A hub's clients send commands, mostly small, so
//     their context would save little; the window would cost every
//     browser connection three times its idle footprint.
//   - server_max_window_bits=N (8–15): answered with N. compress/flate
//     always works with a 32 KiB window, but a message compressed on its
//     own refers back at most its own length: to such a connection only
//     publications of at most 2^N bytes go compressed, the rest plain.
//   - client_max_window_bits[=N]: not answered; the reader inflates any
//     window up to 2^15, which §7.1.2.1 lets the client use then.
//   - Anything else (an unknown or repeated parameter, a value out of
//     range, bad syntax) declines that offer; the next one is tried, and
//     when none is left the connection opens without compression.
//
// Reading: frames the client compressed are inflated by the WebSocket
// library (coder/websocket), which is told the outcome of this
// negotiation by the request header it parses (see wsDeflate.libraryOffer):
// its own negotiation declines server_max_window_bits below 15 and lets
// malformed client_max_window_bits through, so it cannot be the one that
// answers, but its reader is the one that knows the frames. Its read limit
// counts inflated bytes, so a deflate bomb is cut with 1009 at
// --max-message, never inflated whole.

// wsDeflate is what a connection agreed to; the zero value is no
// compression. Neither side takes its context over.
type wsDeflate struct {
	on bool
	// windowBits bounds the server's window (server_max_window_bits); 15
	// when the client asked for no bound.
	windowBits int
}

// wsMaxWindowBits is the largest LZ77 window (RFC 7692 §7.1.2): compress/flate's.
const wsMaxWindowBits = 15

// fits reports whether a message of n bytes may go compressed to the
// connection: on its own it refers back less than n bytes.
func (d wsDeflate) fits(n int) bool {
	return d.on && (d.windowBits >= wsMaxWindowBits || n <= 1<<d.windowBits)
}

// response is the Sec-WebSocket-Extensions answer.
func (d wsDeflate) response() string {
	s := "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	if d.windowBits < wsMaxWindowBits {
		s += "; server_max_window_bits=" + strconv.Itoa(d.windowBits)
	}
	return s
}

// libraryOffer is the offer the WebSocket library is shown in place of the
// client's, so that it reads frames as agreed: each message inflated on
// its own, no window kept.
func (d wsDeflate) libraryOffer() string {
	return "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
}

// wsMaxOffers bounds the work one header may cost: offers past it are
// not looked at.
const wsMaxOffers = 16

// negotiateDeflate picks the first acceptable permessage-deflate offer in
// the request's Sec-WebSocket-Extensions values.
func negotiateDeflate(h http.Header) wsDeflate {
	offers := 0
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		for len(v) > 0 && offers < wsMaxOffers {
			var ext wsExtension
			var ok bool
			ext, v, ok = parseExtension(v)
			if !ok {
				return wsDeflate{} // the rest of the value cannot be split reliably
			}
			offers++
			if !strings.EqualFold(ext.name, "permessage-deflate") {
				continue
			}
			if d, ok := acceptDeflate(ext.params); ok {
				return d
			}
		}
	}
	return wsDeflate{}
}

// acceptDeflate answers one permessage-deflate offer, or declines it.
func acceptDeflate(params []wsParam) (wsDeflate, bool) {
	d := wsDeflate{on: true, windowBits: wsMaxWindowBits}
	var seen [4]bool
	for _, p := range params {
		var i int
		switch strings.ToLower(p.name) {
		case "server_no_context_takeover":
			i = 0
			if p.hasValue {
				return wsDeflate{}, false
			}
		case "client_no_context_takeover":
			i = 1
			if p.hasValue {
				return wsDeflate{}, false
			}
		case "server_max_window_bits":
			i = 2
			bits, ok := windowBits(p.value)
			if !p.hasValue || !ok {
				return wsDeflate{}, false
			}
			d.windowBits = bits
		case "client_max_window_bits":
			i = 3
			if _, ok := windowBits(p.value); p.hasValue && !ok {
				return wsDeflate{}, false
			}
		default:
			return wsDeflate{}, false
		}
		if seen[i] {
			return wsDeflate{}, false // §7: a parameter may appear once
		}
		seen[i] = true
	}
	return d, true
}

// windowBits parses a window-bits value: 8 to 15, decimal, no leading zero.
func windowBits(s string) (int, bool) {
	if len(s) == 0 || len(s) > 2 || s[0] == '0' {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 8 || n > 15 {
		return 0, false
	}
	return n, true
}

// wsExtension is one element of a Sec-WebSocket-Extensions list (RFC 6455
// §9.1): a name and its parameters.
type wsExtension struct {
	name   string
	params []wsParam
}

type wsParam struct {
	name, value string
	hasValue    bool
}

// wsMaxParams bounds the parameters of one extension.
const wsMaxParams = 16

// parseExtension parses one extension off the front of a header value and
// returns the rest, after its comma. It reports false on bad syntax.
func parseExtension(v string) (wsExtension, string, bool) {
	var ext wsExtension
	v = skipSpace(v)
	ext.name, v = token(v)
	if ext.name == "" {
		return ext, "", false
	}
	for {
		v = skipSpace(v)
		if v == "" {
			return ext, "", true
		}
		switch v[0] {
		case ',':
			return ext, v[1:], true
		case ';':
		default:
			return ext, "", false
		}
		if len(ext.params) == wsMaxParams {
			return ext, "", false
		}
		var p wsParam
		p.name, v = token(skipSpace(v[1:]))
		if p.name == "" {
			return ext, "", false
		}
		v = skipSpace(v)
		if v != "" && v[0] == '=' {
			p.hasValue = true
			v = skipSpace(v[1:])
			var ok bool
			if p.value, v, ok = tokenOrQuoted(v); !ok {
				return ext, "", false
			}
		}
		ext.params = append(ext.params, p)
	}
}

func skipSpace(v string) string {
	return strings.TrimLeft(v, " \t")
}

// token takes an RFC 7230 token off the front of v.
func token(v string) (string, string) {
	i := 0
	for i < len(v) && isTokenChar(v[i]) {
		i++
	}
	return v[:i], v[i:]
}

func isTokenChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	return !strings.ContainsRune("()<>@,;:\\\"/[]?={}", rune(c))
}

// tokenOrQuoted takes a parameter value: a token, or a quoted string whose
// content must itself be a token (RFC 6455 §9.1).
func tokenOrQuoted(v string) (string, string, bool) {
	if v == "" || v[0] != '"' {
		t, rest := token(v)
		return t, rest, t != ""
	}
	end := strings.IndexByte(v[1:], '"')
	if end < 0 {
		return "", "", false
	}
	t := v[1 : 1+end]
	if t == "" || strings.IndexFunc(t, func(r rune) bool { return r > 0x7f || !isTokenChar(byte(r)) }) >= 0 {
		return "", "", false
	}
	return t, v[2+end:], true
}

// wsDeflateLevel trades the hub's CPU for bytes on the wire. The work is
// once per publication, so it weighs little against the deliveries; see
// docs/benchmarks.md, "Compression".
const wsDeflateLevel = flate.BestSpeed

var deflaters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, wsDeflateLevel) // the level is valid
	return w
}}

// deflateMessage compresses p as one permessage-deflate message with no
// context (RFC 7692 §7.2.1), or returns nil when that would not save a
// byte.
func deflateMessage(p []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(p)/2 + 16)
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&out)
	w.Write(p) // bytes.Buffer does not fail
	w.Flush()
	deflaters.Put(w)
	b := out.Bytes()
	// Flush ends with an empty stored block, 00 00 ff ff, which the
	// message leaves out (§7.2.1) and the receiver puts back.
	b = bytes.TrimSuffix(b, []byte{0, 0, 0xff, 0xff})
	if len(b) >= len(p) {
		return nil
	}
	return b
}
