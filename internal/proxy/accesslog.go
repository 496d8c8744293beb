package proxy

import (
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// The access log's fast path: with Config.AccessLog set, a tunnel's line
// is appended byte by byte into a pooled buffer and written with one
// Write, instead of going through slog's attribute and handler machinery.
// That machinery cost about a tenth of a tunnel setup's CPU (and, run at
// the end of a tunnel on its small fresh stack, grew that stack). The line
// is the same JSON object slog's JSONHandler writes for the same record,
// field for field, so readers of the log see no difference.

var lineBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeAccessLine formats l as one JSON line and writes it to
// s.cfg.AccessLog.
func (s *Server) writeAccessLine(l *tunnelLog) {
	bp := lineBufPool.Get().(*[]byte)
	b := appendAccessLine((*bp)[:0], l, time.Now())
	s.cfg.AccessLog.Write(b)
	*bp = b
	lineBufPool.Put(bp)
}

func appendAccessLine(b []byte, l *tunnelLog, now time.Time) []byte {
	b = append(b, `{"time":"`...)
	b = now.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"proxy","proto":`...)
	b = appendJSONString(b, l.proto)
	b = append(b, `,"client":`...)
	b = appendJSONString(b, addrString(l.client))
	b = append(b, `,"target":`...)
	b = appendJSONString(b, l.target)
	if l.addr != "" {
		b = append(b, `,"addr":`...)
		b = appendJSONString(b, l.addr)
	}
	if l.user != "" {
		b = append(b, `,"user":`...)
		b = appendJSONString(b, l.user)
	}
	if l.status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(l.status), 10)
	}
	b = append(b, `,"bytes_up":`...)
	b = strconv.AppendInt(b, l.up, 10)
	b = append(b, `,"bytes_down":`...)
	b = strconv.AppendInt(b, l.down, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(now.Sub(l.start).Microseconds())/1000, 'f', -1, 64)
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, l.outcome.String())
	if l.err != nil {
		b = append(b, `,"err":`...)
		b = appendJSONString(b, l.err.Error())
	}
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD (as
// encoding/json and slog do). Targets and user names come from clients,
// so anything may be in them.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
