package hub

import (
	"context"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// HealthChecker is implemented by engines whose store lives outside the
// process (Redis), so that the hub can say whether it can serve. An
// engine without it (memory) is always healthy.
//
// Healthy returns nil when the store answered recently, and the reason
// otherwise. It must return by ctx's deadline even when the store stalls:
// load balancers call it every few seconds, and a health check that hangs
// is worse than one that fails.
type HealthChecker interface {
	Healthy(ctx context.Context) error
}

// HealthTimeout bounds Hub.Healthy: a store that has not answered within
// it counts as unreachable.
const HealthTimeout = time.Second

// Healthy reports whether the hub can serve publishes and subscriptions:
// nil, or a *msg.Error with code unavailable once Shutdown has begun or
// while the engine cannot reach its store. It returns within
// HealthTimeout, or sooner if ctx ends.
func (h *Hub) Healthy(ctx context.Context) error {
	h.mu.RLock()
	closed := h.closed
	h.mu.RUnlock()
	if closed {
		return ErrShutdown
	}
	hc, ok := h.engine.(HealthChecker)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, HealthTimeout)
	defer cancel()
	if err := hc.Healthy(ctx); err != nil {
		return msg.Errorf(msg.CodeUnavailable, "engine unavailable: %v", err)
	}
	return nil
}
