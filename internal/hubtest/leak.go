package hubtest

import (
	"testing"

	"github.com/duplexhq/duplex/internal/leaktest"
)

// CheckLeaks fails t if goroutines it started still run when it ends (see
// leaktest.Check). Idle keep-alive connections of HTTP clients are not
// counted. Call it first in a test.
func CheckLeaks(t testing.TB) {
	t.Helper()
	leaktest.Check(t, &leaktest.Options{Ignore: []string{"net/http.(*persistConn)"}})
}
