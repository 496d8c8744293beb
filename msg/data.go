package msg

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"
)

// CompactData is the one check every publication passes, whichever way it
// enters the hub (HTTP publish, WebSocket publish, an engine reading its
// store back): data must be one JSON value whose strings are valid Unicode,
// at most maxLen bytes once compacted. It returns the compact form, which
// every transport can frame as it is: one line (NDJSON, SSE data:) of valid
// UTF-8 (WebSocket text frames).
//
// Valid Unicode means two things encoding/json alone does not check:
//   - the bytes are valid UTF-8 (encoding/json copies invalid bytes through,
//     and a conforming WebSocket client fails the connection with 1007 on
//     them);
//   - every \u escape of a surrogate is half of a pair: a lone "\ud800"
//     stands for no character, so decoders disagree about it (Go and
//     browsers' TextDecoder substitute U+FFFD, JSON.parse keeps a broken
//     JS string, strict decoders refuse).
//
// Both are refused with CodeInvalidJSON, naming the byte offset of data
// where the offending bytes start. An oversized value is CodeTooLarge.
// CompactData(CompactData(d)) returns the same bytes: an engine can run
// stored data through it again.
func CompactData(data []byte, maxLen int) (json.RawMessage, error) {
	if len(data) > 2*maxLen+1024 {
		// Far too big even before compaction: don't spend work on it.
		return nil, Errorf(CodeTooLarge, "message is larger than %d bytes", maxLen)
	}
	var buf bytes.Buffer
	buf.Grow(len(data))
	if len(bytes.TrimLeft(data, " \t\r\n")) == 0 {
		return nil, Errorf(CodeInvalidJSON, "data is empty: not valid JSON")
	}
	if err := json.Compact(&buf, data); err != nil {
		return nil, syntaxError(data, err)
	}
	if err := checkStrings(data); err != nil {
		return nil, err
	}
	if buf.Len() > maxLen {
		return nil, Errorf(CodeTooLarge, "message is %d bytes, larger than %d", buf.Len(), maxLen)
	}
	return buf.Bytes(), nil
}

// CheckStored checks data read back from a store that anything may have
// written (Redis): it must be what CompactData returns — one JSON value of
// valid Unicode, compact enough to be one line. Size is not checked: the
// limit applied when it was published.
func CheckStored(data []byte) error {
	if !json.Valid(data) {
		return Errorf(CodeInvalidJSON, "stored data is not valid JSON")
	}
	if bytes.ContainsAny(data, "\r\n") {
		return Errorf(CodeInvalidJSON, "stored data is not compact JSON")
	}
	return checkStrings(data)
}

// syntaxError names where data stops being JSON. json.Compact's errors
// carry no offset, so the (rare) error path asks json.Unmarshal, whose
// do.
func syntaxError(data []byte, err error) error {
	var raw json.RawMessage
	var se *json.SyntaxError
	if errors.As(json.Unmarshal(data, &raw), &se) {
		at := se.Offset - 1 // Offset counts the bytes read, the bad one included
		if at < 0 || se.Offset >= int64(len(data)) && strings.HasPrefix(se.Error(), "unexpected end") {
			at = int64(len(data))
		}
		return Errorf(CodeInvalidJSON, "data is not valid JSON at byte %d: %v", at, se)
	}
	return Errorf(CodeInvalidJSON, "data is not valid JSON: %v", err)
}

// checkStrings reports the first invalid UTF-8 sequence or unpaired
// surrogate escape in b, which must be syntactically valid JSON. Outside
// strings valid JSON is ASCII, so only strings need looking at.
func checkStrings(b []byte) error {
	inString := false
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case !inString:
			if c == '"' {
				inString = true
			}
			i++
		case c == '"':
			inString = false
			i++
		case c == '\\':
			if b[i+1] != 'u' {
				i += 2 // \" \\ \/ \b \f \n \r \t: valid JSON has the next byte
				continue
			}
			n, err := checkEscape(b, i)
			if err != nil {
				return err
			}
			i += n
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return Errorf(CodeInvalidJSON, "data is not valid JSON: invalid UTF-8 at byte %d", i)
			}
			i += size
		}
	}
	return nil
}

// checkEscape checks the \uXXXX escape at b[i:] (valid JSON, so the four
// hex digits are there) and returns its length: 6, or 12 for a surrogate
// pair.
func checkEscape(b []byte, i int) (int, error) {
	r := hex4(b[i+2 : i+6])
	switch {
	case r < 0xd800 || r > 0xdfff:
		return 6, nil
	case r <= 0xdbff && i+12 <= len(b) && b[i+6] == '\\' && b[i+7] == 'u':
		if lo := hex4(b[i+8 : i+12]); lo >= 0xdc00 && lo <= 0xdfff {
			return 12, nil
		}
	}
	return 0, Errorf(CodeInvalidJSON, "data is not valid JSON: unpaired surrogate escape %s at byte %d (strings must be valid Unicode)", b[i:i+6], i)
}

// hex4 decodes four hex digits that JSON's syntax already checked.
func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default: // 'A'-'F'
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}
