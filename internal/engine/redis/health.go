package redis

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// healthFresh is how long an observed outcome (of a Publish, a History or
// a health PING) stands for Redis's state: within it, Healthy answers
// from memory and sends nothing to Redis.
const healthFresh = time.Second

// healthProbeTimeout bounds the PING that Healthy sends when nothing was
// observed within healthFresh.
const healthProbeTimeout = time.Second

// health is the engine's most recent view of whether Redis answers: the
// outcome of the latest round trip, whoever made it.
type health struct {
	mu  sync.Mutex // guards at, err, probe
	at  time.Time  // when err was observed; zero before the first
	err error      // nil: Redis answered
	// probe is closed when the PING in flight, if any, has its outcome.
	probe chan struct{}
}

// record notes the outcome of one round trip. A reply from Redis, even an
// error reply (a script error, a wrong type), means it is reachable; a
// caller giving up (context.Canceled) says nothing about Redis.
func (h *health) record(err error) {
	var reply *rueidis.RedisError
	switch {
	case errors.Is(err, context.Canceled):
		return
	case err != nil && errors.As(err, &reply):
		err = nil
	}
	h.mu.Lock()
	h.at, h.err = time.Now(), err
	h.mu.Unlock()
}

// Healthy implements hub.HealthChecker: nil if Redis answered within the
// last second, else the outcome of one PING, shared by every caller
// meanwhile and bounded by a second and by ctx. It never waits longer
// than ctx allows: a caller whose ctx ends first gets "no answer".
func (e *Engine) Healthy(ctx context.Context) error {
	h := &e.stats.health
	h.mu.Lock()
	if !h.at.IsZero() && time.Since(h.at) < healthFresh {
		err := h.err
		h.mu.Unlock()
		return err
	}
	if probe := h.probe; probe != nil {
		// Another caller is asking Redis: wait for its answer.
		h.mu.Unlock()
		select {
		case <-probe:
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.err
		case <-ctx.Done():
			return errors.New("redis: no answer yet")
		}
	}
	probe := make(chan struct{})
	h.probe = probe
	h.mu.Unlock()

	pctx, cancel := context.WithTimeout(ctx, healthProbeTimeout)
	rdb, err := e.client()
	if err == nil {
		err = rdb.Do(pctx, rdb.B().Ping().Build()).Error()
	}
	cancel()
	if err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		err = fmt.Errorf("redis: no answer to PING within %v", healthProbeTimeout)
	} else if err != nil {
		err = fmt.Errorf("redis: %w", err)
	}
	h.mu.Lock()
	if !errors.Is(ctx.Err(), context.Canceled) {
		// A caller that went away learnt nothing about Redis.
		h.at, h.err = time.Now(), err
	}
	h.probe = nil
	h.mu.Unlock()
	close(probe)
	return err
}
