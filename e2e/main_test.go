package e2e

import (
	"os"
	"testing"

	"github.com/duplexhq/duplex/internal/hubtest"
)

// TestMain lets hubtest kill the redis-server it shares among this
// binary's hubs when DUPLEX_TEST_ENGINE=redis (see hubtest.EngineEnv), and
// removes the duplex binary the hub-process tests built (hubproc_test.go).
func TestMain(m *testing.M) {
	code := hubtest.Main(m)
	if duplexBinDir != "" {
		os.RemoveAll(duplexBinDir)
	}
	os.Exit(code)
}
