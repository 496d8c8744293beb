package msg

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseCursor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Cursor
		err  bool
	}{
		{in: "", want: Cursor{}},
		{in: "chat:k3v9x2:42", want: Cursor{"chat": {"k3v9x2", 42}}},
		{in: "chat::0", want: Cursor{"chat": {"", 0}}},
		{in: "a:b:c:e1:7", want: Cursor{"a:b:c": {"e1", 7}}},
		{in: "chat:k3v9x2:42,news:k3v9x2:7", want: Cursor{"chat": {"k3v9x2", 42}, "news": {"k3v9x2", 7}}},
		{in: "x:e:18446744073709551615", want: Cursor{"x": {"e", 18446744073709551615}}},
		{in: "x:e:18446744073709551616", err: true}, // overflows uint64
		{in: "chat", err: true},
		{in: "chat:42", err: true},
		{in: ":e:1", err: true},              // empty channel
		{in: "chat:E:1", err: true},          // upper-case epoch
		{in: "chat:e:-1", err: true},         // sign
		{in: "chat:e:+1", err: true},         // sign
		{in: "chat:e:", err: true},           // no offset
		{in: "chat:e:1x", err: true},         // junk
		{in: "chat:e:1,", err: true},         // empty entry
		{in: "chat:e:1,chat:e:2", err: true}, // duplicate
		{in: "ch at:e:1", err: true},
		{in: "chat:abcdefghijklmnopq:1", err: true}, // epoch too long
		{in: strings.Repeat("a", 129) + ":e:1", err: true},
		{in: strings.Repeat("a:e:1,", MaxCursorEntries) + "b:e:1", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseCursor(tt.in)
			if tt.err {
				if err == nil || !errors.Is(err, ErrInvalidCursor) {
					t.Fatalf("ParseCursor(%q) = %v, %v; want an ErrInvalidCursor", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCursor(%q): %v", tt.in, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParseCursor(%q) = %v, want %v", tt.in, got, tt.want)
			}
			for ch, p := range tt.want {
				if got[ch] != p {
					t.Fatalf("ParseCursor(%q)[%q] = %v, want %v", tt.in, ch, got[ch], p)
				}
			}
		})
	}
}

func TestCursorStringSorted(t *testing.T) {
	c := Cursor{"news": {"e", 7}, "chat": {"e", 42}, "a:b": {"", 0}}
	if got, want := c.String(), "a:b::0,chat:e:42,news:e:7"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}

// FuzzParseCursor checks that any accepted cursor survives a format/parse
// round trip unchanged, and that nothing panics.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"", "chat:k3v9x2:42", "a:b:c:e1:7,news::0", "x:e:18446744073709551615", "chat:e:1,chat:e:2", ":::", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		back, err := ParseCursor(c.String())
		if err != nil {
			t.Fatalf("ParseCursor(%q) ok, but its String %q does not parse: %v", s, c.String(), err)
		}
		if back.String() != c.String() || len(back) != len(c) {
			t.Fatalf("round trip changed %q: %q -> %q", s, c.String(), back.String())
		}
		for ch := range c {
			if !ValidChannel(ch) {
				t.Fatalf("accepted invalid channel %q", ch)
			}
		}
	})
}

func TestEnvelopeAppendJSONMatchesMarshal(t *testing.T) {
	t.Parallel()
	for _, data := range []string{`{"text":"hi"}`, `1`, `"x"`, `[1,2,{"a":null}]`, `null`, ``} {
		e := Envelope{Type: TypeMessage, Channel: "chat:1@x.y-z_", Epoch: "k3v9x2", Offset: 42, Time: 1763980000123, Data: json.RawMessage(data)}
		got := e.AppendJSON(nil)
		if data == "" {
			e.Data = json.RawMessage("null")
		}
		want, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("AppendJSON = %s\nwant        %s", got, want)
		}
	}
	g := Gap{Type: TypeGap, Channel: "chat", Epoch: "k3", Next: 57}
	want, _ := json.Marshal(g)
	if got := g.AppendJSON(nil); string(got) != string(want) {
		t.Fatalf("Gap.AppendJSON = %s, want %s", got, want)
	}
}

func TestValidChannel(t *testing.T) {
	t.Parallel()
	good := []string{"a", "chat", "A-Z_a.z:0@9", strings.Repeat("x", 128)}
	bad := []string{"", strings.Repeat("x", 129), "a b", "a/b", "a,b", "é", "a\x00", "a?b", "a#b"}
	for _, s := range good {
		if !ValidChannel(s) {
			t.Errorf("ValidChannel(%q) = false", s)
		}
	}
	for _, s := range bad {
		if ValidChannel(s) {
			t.Errorf("ValidChannel(%q) = true", s)
		}
	}
}

func TestCodeStatus(t *testing.T) {
	t.Parallel()
	want := map[Code]int{CodeInvalidChannel: 400, CodeInvalidCursor: 400, CodeInvalidJSON: 400, CodeBadRequest: 400,
		CodeUnauthorized: 401, CodeForbidden: 403, CodeNotFound: 404, CodeMethodNotAllow: 405, CodeRequestTimeout: 408, CodeTooLarge: 413,
		CodeRateLimited: 429, CodeInternal: 500, CodeUnavailable: 503}
	for c, s := range want {
		if c.HTTPStatus() != s {
			t.Errorf("%s.HTTPStatus() = %d, want %d", c, c.HTTPStatus(), s)
		}
	}
	err := error(Errorf(CodeForbidden, "no"))
	if CodeOf(errors.Join(errors.New("x"), err)) != CodeForbidden {
		t.Errorf("CodeOf lost the code")
	}
	if CloseCodeOf(&CloseError{Code: CloseSlow}) != CloseSlow || !CloseSlow.Reconnect() || !CloseAbnormal.Reconnect() || ClosePolicy.Reconnect() {
		t.Errorf("close code helpers wrong")
	}
}
