package check

import (
	"strings"
	"testing"
)

// FuzzParseList feeds arbitrary lists to the parser: it must not panic,
// every line is either a target, a LineError or ignored, and every target
// it returns parses again to the same URL.
func FuzzParseList(f *testing.F) {
	f.Add("127.0.0.1:1080\n# comment\n\nhttp://u:p@h:8080\nsocks5://x:1 # trailing\nbad line\n127.0.0.1:1080\n")
	f.Fuzz(func(t *testing.T, s string) {
		ts, bad, err := ParseList(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Count(s, "\n") + 1
		if len(ts)+len(bad) > lines {
			t.Fatalf("%d targets and %d errors from %d lines", len(ts), len(bad), lines)
		}
		for _, tg := range ts {
			again, err := ParseTarget(tg.URL.String())
			if tg.URL.Scheme == "any" {
				again, err = ParseTarget(strings.TrimPrefix(tg.URL.String(), "any://"))
			}
			if err != nil || again.URL.String() != tg.URL.String() {
				t.Fatalf("target %q does not parse back: %v %v", tg.URL, again.URL, err)
			}
			if len(tg.Protocols) == 0 {
				t.Fatalf("target %q probes nothing", tg.URL)
			}
		}
		for _, b := range bad {
			if b.Line < 1 || b.Line > lines || b.Err == "" {
				t.Fatalf("bad LineError %+v", b)
			}
		}
	})
}
