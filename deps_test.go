package duplex_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirections keeps the layout of DESIGN.md §8: who may import whom.
func TestImportDirections(t *testing.T) {
	const mod = "github.com/duplexhq/duplex/"
	rules := []struct {
		pkg    string
		forbid []string // prefixes (after the module path) the package must not depend on
	}{
		{"msg", []string{"client", "internal/", "web"}},
		{"client", []string{"internal/", "web"}},
		{"internal/hub", []string{"internal/engine", "internal/server", "internal/proxy", "internal/cli", "internal/bench", "client", "net/http"}},
		{"internal/engine/memory", []string{"internal/server", "internal/proxy", "internal/cli", "net/http"}},
		{"internal/engine/redis", []string{"internal/server", "internal/proxy", "internal/cli", "internal/engine/memory", "net/http"}},
		{"internal/server", []string{"internal/engine", "internal/proxy", "internal/cli", "internal/bench", "client"}},
		{"internal/proxy", []string{"msg", "client", "internal/hub", "internal/server", "internal/engine", "internal/cli", "internal/bench"}},
		{"internal/bench", []string{"internal/hub", "internal/server", "internal/engine", "internal/proxy", "internal/cli"}},
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-deps", "./"+r.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps ./%s: %v\n%s", r.pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range r.forbid {
				name := dep
				if strings.HasPrefix(dep, mod) {
					name = strings.TrimPrefix(dep, mod)
				} else if f != "net/http" {
					continue
				}
				if name == f || strings.HasPrefix(name, strings.TrimSuffix(f, "/")+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(name, f)) {
					t.Errorf("%s depends on %s (forbidden by DESIGN.md §8)", r.pkg, dep)
				}
			}
		}
	}
	// cmd/duplex is main: a signal-aware context and cli.Main, nothing else.
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \" \"}}", "./cmd/duplex").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range strings.Fields(string(out)) {
		if strings.HasPrefix(imp, mod) && imp != mod+"internal/cli" {
			t.Errorf("cmd/duplex imports %s; it should import only internal/cli", imp)
		}
	}
}
