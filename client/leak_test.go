package client

import (
	"testing"

	"github.com/duplexhq/duplex/internal/leaktest"
)

// checkLeaks fails t if goroutines started during the test still run when
// it ends. The client's own tests may use the stdlib-only leaktest package;
// the client itself imports nothing internal.
func checkLeaks(t *testing.T) {
	t.Helper()
	leaktest.Check(t, nil)
}
