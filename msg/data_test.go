package msg

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCompactData(t *testing.T) {
	t.Parallel()
	ok := []struct{ in, out string }{
		{`{"a": 1}`, `{"a":1}`},
		{` "héllo ✓ 😀" `, `"héllo ✓ 😀"`},
		{`"\ud83d\ude00"`, `"\ud83d\ude00"`}, // a pair: 😀
		{`"\uD83D\uDE00"`, `"\uD83D\uDE00"`},
		{`"\u00e9\u0000\uffff\ufffd"`, `"\u00e9\u0000\uffff\ufffd"`},
		{`["\\ud800", "\"\\"]`, `["\\ud800","\"\\"]`}, // an escaped backslash, not an escape
		{`"\ud7ff\ue000"`, `"\ud7ff\ue000"`},          // just outside the surrogates
		{`null`, `null`},
	}
	for _, c := range ok {
		got, err := CompactData([]byte(c.in), 1000)
		if err != nil || string(got) != c.out {
			t.Errorf("CompactData(%q) = %q, %v; want %q", c.in, got, err, c.out)
		}
	}
	bad := []struct {
		in   string
		code Code
		want string // in the message
	}{
		{"{\"a\":\"\xff\xfe\"}", CodeInvalidJSON, "invalid UTF-8 at byte 6"},
		{"\"ok\xc3\"", CodeInvalidJSON, "invalid UTF-8 at byte 3"},           // truncated sequence
		{"\"\xc0\xaf\"", CodeInvalidJSON, "invalid UTF-8 at byte 1"},         // overlong '/'
		{"\"\xed\xa0\x80\"", CodeInvalidJSON, "invalid UTF-8 at byte 1"},     // a surrogate encoded directly
		{"\"\xf4\x90\x80\x80\"", CodeInvalidJSON, "invalid UTF-8 at byte 1"}, // past U+10FFFF
		{`{"a": "\ud800"}`, CodeInvalidJSON, `unpaired surrogate escape \ud800 at byte 7`},
		{`"\udc00"`, CodeInvalidJSON, `\udc00 at byte 1`},                             // a low half alone
		{`"\ud800\u0041"`, CodeInvalidJSON, `\ud800 at byte 1`},                       // a high half before a non-low
		{`"x\ud800\ud800"`, CodeInvalidJSON, `\ud800 at byte 2`},                      // two highs
		{`"\ud800\\udc00"`, CodeInvalidJSON, `\ud800 at byte 1`},                      // the next is an escaped backslash
		{`"\udbff"`, CodeInvalidJSON, `\udbff at byte 1`},                             // high at the end
		{`{oops`, CodeInvalidJSON, "not valid JSON at byte 1: invalid character 'o'"}, // syntax, with its offset
		{``, CodeInvalidJSON, "empty"},                                                // nothing
		{`  `, CodeInvalidJSON, "empty"},
		{`{"a":`, CodeInvalidJSON, "at byte 5: unexpected end"},             // only space
		{`1 2`, CodeInvalidJSON, "not valid JSON"},                          // two values
		{`"` + strings.Repeat("x", 1000) + `"`, CodeTooLarge, "1002 bytes"}, // compact form over the limit
		{strings.Repeat(" ", 4000), CodeTooLarge, "larger than 1000"},       // too big to look at
	}
	for _, c := range bad {
		got, err := CompactData([]byte(c.in), 1000)
		if err == nil {
			t.Errorf("CompactData(%q) = %q, want an error", c.in, got)
			continue
		}
		if CodeOf(err) != c.code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CompactData(%q): %v; want %s containing %q", c.in, err, c.code, c.want)
		}
	}
}

// surrogateEscape finds a \u escape of a surrogate that is a real escape
// (preceded by an even run of backslashes).
var surrogateEscape = regexp.MustCompile(`(^|[^\\])(\\\\)*\\u[dD][89abcdefABCDEF]`)

// FuzzCompactData: whatever CompactData accepts is compact, valid JSON of
// valid UTF-8 within the limit, that Go decodes without substituting a
// character and that passes again unchanged; whatever it refuses as
// invalid_json is invalid JSON, invalid UTF-8, or holds a surrogate
// escape.
func FuzzCompactData(f *testing.F) {
	for _, s := range []string{
		`{"text":"hi"}`, "{\"a\":\"\xff\xfe\"}", `"\ud800"`, `"\ud83d\ude00"`, `"\udc00\ud800"`,
		`[1, 2.5e3, true, null, {"k": [ ]}]`, `"\\ud800"`, "\"\xed\xa0\x80\"", `{oops`, `"\u00E9"`,
	} {
		f.Add([]byte(s))
	}
	const max = 512
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := CompactData(data, max)
		if err != nil {
			switch CodeOf(err) {
			case CodeTooLarge:
				var b bytes.Buffer
				if json.Compact(&b, data) == nil && b.Len() <= max && len(data) <= 2*max+1024 {
					t.Fatalf("%q refused as too large, compact form is %d bytes", data, b.Len())
				}
			case CodeInvalidJSON:
				if json.Valid(data) && utf8.Valid(data) && !surrogateEscape.Match(data) {
					t.Fatalf("%q refused as invalid but is valid JSON of valid UTF-8: %v", data, err)
				}
			default:
				t.Fatalf("%q: unexpected error %v", data, err)
			}
			return
		}
		if !json.Valid(out) || !utf8.Valid(out) || len(out) > max || bytes.ContainsAny(out, "\r\n") {
			t.Fatalf("%q accepted as %q: not one line of valid JSON and UTF-8 within %d bytes", data, out, max)
		}
		var v any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("%q accepted but does not decode: %v", out, err)
		}
		again, err := CompactData(out, max)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("CompactData is not idempotent on %q: %q, %v", out, again, err)
		}
		if bytes.ContainsRune(out, utf8.RuneError) {
			return // a literal U+FFFD: no way to tell substitution from it
		}
		// Go substitutes U+FFFD for what is not Unicode: re-encoding what it
		// decoded must hold none.
		re, _ := json.Marshal(v)
		if bytes.ContainsRune(re, utf8.RuneError) || bytes.Contains(re, []byte(`\ufffd`)) {
			t.Fatalf("%q accepted, but Go decodes it with substitutions: %s", out, re)
		}
	})
}

// BenchmarkCompactData: the check every publication passes; the string scan
// beside json.Compact is the UTF-8 and surrogate check.
func BenchmarkCompactData(b *testing.B) {
	for _, tc := range []struct{ name, data string }{
		{"small", `{"text":"hi","user":"alice","n":42}`},
		{"unicode-1KiB", `{"text":"` + strings.Repeat("héllo wörld ✓ ", 64) + `"}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			data := []byte(tc.data)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := CompactData(data, 65536); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
