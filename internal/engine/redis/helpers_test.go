package redis

import (
	"context"
	"testing"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/redistest"
)

// startHub starts a real redis-server, an engine on it with cfg (its URL
// filled in) and a hub over that engine; the hub shuts down, and with it
// the engine, and the server is killed when the test ends.
func startHub(t *testing.T, cfg Config) (*redistest.Server, *Engine, *hub.Hub) {
	t.Helper()
	srv := redistest.Start(t, nil)
	cfg.URL = srv.URL()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(context.Background(), hub.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	return srv, e, h
}
