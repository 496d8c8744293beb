package enginetest

import (
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
)

// Config is the history bound of the engines of one test.
type Config struct {
	HistorySize int           // as the engines' own: 0 means 1000, negative none
	HistoryTTL  time.Duration // 0 means 10 minutes
}

// Store makes engine instances that share one store. Run asks for a new
// Store for each test.
type Store struct {
	// NewEngine returns a new engine instance over the store, configured
	// by cfg, not started: the suite starts it and closes it. Every call
	// within one test gets the same cfg.
	NewEngine func(t *testing.T, cfg Config) hub.Engine
	// Flush makes the store lose every channel, as a Redis restarted
	// without persistence or flushed does.
	Flush func(t *testing.T)
	// Keys, if set, lists the store's persistent keys: reading a channel
	// that was never published must not add any.
	Keys func(t *testing.T) []string
	// DropDelivery, if set, interrupts the store's delivery to every
	// engine instance (Redis: CLIENT KILL TYPE pubsub). Engines then must
	// call Handlers.Lost for each subscribed channel once delivery is back.
	// Nil means the engine cannot lose deliveries, and must never call Lost.
	DropDelivery func(t *testing.T)
	// Channels, if set, returns n channel names to publish on, spread as
	// the store needs (a Cluster: across slots and nodes). Nil means
	// "ch0" … "chN-1".
	Channels func(n int) []string
}
