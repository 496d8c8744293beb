package server

import "testing"

func TestValidUTF8Prefix(t *testing.T) {
	for _, tc := range []struct {
		in string
		n  int
		ok bool
	}{
		{"abc", 3, true},
		{"a\xe2\x82", 1, true},     // incomplete € waits for more
		{"a\xe2\x82\xac", 4, true}, // complete
		{"a\xff", 0, false},
		{"\xed\xa0", 0, false}, // a surrogate can never complete
		{"\xf4\x90", 0, false}, // above U+10FFFF
		{"\x80", 0, false},
		{"", 0, true},
	} {
		n, ok := validUTF8Prefix([]byte(tc.in))
		if n != tc.n || ok != tc.ok {
			t.Errorf("validUTF8Prefix(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.ok)
		}
	}
}
