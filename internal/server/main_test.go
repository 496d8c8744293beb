package server_test

import (
	"os"
	"testing"

	"github.com/duplexhq/duplex/internal/hubtest"
)

// TestMain lets hubtest kill the redis-server it shares among this
// binary's hubs when DUPLEX_TEST_ENGINE=redis (see hubtest.EngineEnv).
func TestMain(m *testing.M) { os.Exit(hubtest.Main(m)) }
