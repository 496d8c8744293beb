package proxy

import (
	"os"
	"strings"
	"testing"
)

// TestOutcomesClosedSet: every outcome has its own name, and
// docs/proxy.md lists each one, so the access log and the metric's label
// take only documented values.
func TestOutcomesClosedSet(t *testing.T) {
	doc, err := os.ReadFile("../../docs/proxy.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]outcome{}
	for o := outcomeOK; int(o) < len(outcomeNames); o++ {
		name := o.String()
		if name == "" || name == "unknown" {
			t.Errorf("outcome %d has no name", o)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("outcomes %d and %d are both %q", prev, o, name)
		}
		seen[name] = o
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/proxy.md does not list the outcome %q", name)
		}
	}
	if got := outcome(len(outcomeNames)).String(); got != "unknown" {
		t.Errorf("an outcome past the set is %q, want unknown", got)
	}
	for f := failGeneral; f <= failBadAddress; f++ {
		if _, ok := seen[f.outcome().String()]; !ok {
			t.Errorf("dial failure %d maps to no outcome", f)
		}
	}
}
