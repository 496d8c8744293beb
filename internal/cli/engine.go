package cli

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/engine/redis"
	"github.com/duplexhq/duplex/internal/engine/redis/redismetrics"
	"github.com/duplexhq/duplex/internal/hub"
)

// engineFlags are the serve flags that choose and shape the engine.
type engineFlags struct {
	url         string
	historySize int
	historyTTL  time.Duration
	timeout     time.Duration
	presenceTTL time.Duration
}

// newEngine returns the engine --engine names: "memory", or a Redis URL
// (redis://, rediss://, redis+cluster://, rediss+cluster://).
func newEngine(f engineFlags, logger *slog.Logger) (hub.Engine, error) {
	switch {
	case f.url == "memory":
		return memory.New(memory.Config{HistorySize: orNone(f.historySize), HistoryTTL: f.historyTTL}), nil
	case strings.HasPrefix(f.url, "redis"):
		e, err := redis.New(redis.Config{
			URL: f.url, HistorySize: orNone(f.historySize), HistoryTTL: f.historyTTL,
			Timeout: f.timeout, Logger: logger, PresenceTTL: f.presenceTTL,
		})
		if err != nil {
			return nil, fmt.Errorf("--engine: %w", err)
		}
		return e, nil
	default:
		return nil, fmt.Errorf("--engine %q: want memory, redis://host:port/db, rediss://… or redis+cluster://h1:p1,h2:p2", f.url)
	}
}

// engineName is url without credentials, for logs.
func engineName(url string) string {
	if i := strings.Index(url, "://"); i >= 0 {
		if at := strings.LastIndexByte(url, '@'); at > i {
			return url[:i+3] + "***" + url[at:]
		}
	}
	return url
}

// engineCollectors returns the Prometheus collectors of e's own series
// (the Redis engine's round trips and reconnects), for /metrics.
func engineCollectors(e hub.Engine) []prometheus.Collector {
	if r, ok := e.(*redis.Engine); ok {
		return redismetrics.Collectors(r.Stats())
	}
	return nil
}
