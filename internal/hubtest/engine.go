package hubtest

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/engine/redis"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/redistest"
)

// EngineEnv names the environment variable that chooses the engine of the
// hubs a test starts without Options.Engine: unset or "memory", the
// memory engine; "redis", a Redis engine on one redis-server shared by the
// test binary (started by the first such hub, killed by Main), under a key
// prefix of the hub's own, so hubs share nothing, as separate memory
// engines do. ./scripts/test runs internal/server and e2e both ways.
//
// A test that depends on the memory engine itself (its fake clock, its
// sweeps) passes Options.Engine = memory.New(...) and says why; options
// only the memory engine has (Memory.Now, Memory.SweepInterval) keep a hub
// on memory too.
const EngineEnv = "DUPLEX_TEST_ENGINE"

// OnRedis reports whether hubs started without Options.Engine run on
// Redis (EngineEnv=redis).
func OnRedis() bool { return os.Getenv(EngineEnv) == "redis" }

// shared is the test binary's redis-server, started on first use.
var shared struct {
	mu  sync.Mutex // guards srv, err
	srv *redistest.Server
	err error
}

// prefixes numbers the hubs' key prefixes.
var prefixes atomic.Uint64

// Main runs a test binary's tests (call it from TestMain:
// os.Exit(hubtest.Main(m))) and then kills the shared redis-server. On
// Redis it starts that server first, so its goroutine (the log reader)
// is older than every test's leak check.
func Main(m *testing.M) int {
	if OnRedis() {
		if _, err := sharedRedis(); err != nil {
			fmt.Fprintf(os.Stderr, "hubtest: %s=redis: %v\n", EngineEnv, err)
			return 1
		}
	}
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		shared.srv.Close()
		shared.srv = nil
	}
	return code
}

// sharedRedis returns the binary's redis-server, starting it if needed.
func sharedRedis() (*redistest.Server, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = redistest.StartProcess(nil)
	}
	return shared.srv, shared.err
}

// defaultEngine is the engine of a hub started without Options.Engine,
// and the extra collectors its server shows on /metrics.
func defaultEngine(opts *Options) (hub.Engine, error) {
	mem := opts.Memory
	if !OnRedis() || mem.Now != nil || mem.SweepInterval != 0 {
		return memory.New(mem), nil
	}
	srv, err := sharedRedis()
	if err != nil {
		return nil, fmt.Errorf("%s=redis: %w", EngineEnv, err)
	}
	return redis.New(redis.Config{
		URL: srv.URL(), HistorySize: mem.HistorySize, HistoryTTL: mem.HistoryTTL,
		Prefix: fmt.Sprintf("hubtest%d-%d", os.Getpid(), prefixes.Add(1)),
	})
}
