package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// stallEngine is the memory engine that, once stalled, answers no call
// until its ctx is done, as a Redis that stopped answering.
type stallEngine struct {
	*memory.Engine
	stalled atomic.Bool
	// unsubscribes counts Unsubscribe calls made while stalled.
	unsubscribes atomic.Int64
}

func (e *stallEngine) wait(ctx context.Context) error {
	if !e.stalled.Load() {
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (e *stallEngine) Publish(ctx context.Context, channel string, data json.RawMessage) (*hub.Publication, error) {
	if err := e.wait(ctx); err != nil {
		return nil, err
	}
	return e.Engine.Publish(ctx, channel, data)
}

func (e *stallEngine) History(ctx context.Context, channel string, q hub.HistoryQuery) (hub.StreamState, []*hub.Publication, error) {
	if err := e.wait(ctx); err != nil {
		return hub.StreamState{}, nil, err
	}
	return e.Engine.History(ctx, channel, q)
}

func (e *stallEngine) Subscribe(ctx context.Context, channel string) error {
	if err := e.wait(ctx); err != nil {
		return err
	}
	return e.Engine.Subscribe(ctx, channel)
}

func (e *stallEngine) Unsubscribe(ctx context.Context, channel string) error {
	if e.stalled.Load() {
		e.unsubscribes.Add(1)
	}
	if err := e.wait(ctx); err != nil {
		return err
	}
	return e.Engine.Unsubscribe(ctx, channel)
}

// TestStalledEngineIsBounded: with the engine answering nothing, every
// call the hub makes for a transport returns unavailable after
// EngineTimeout, a session's Release unsubscribes its 128 channels under
// one EngineTimeout in all (not one per channel), and Shutdown returns.
// The clock is synctest's: the durations below are exact, not measured.
func TestStalledEngineIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 2 * time.Second
		eng := &stallEngine{Engine: memory.New(memory.Config{})}
		h, err := hub.New(context.Background(), hub.Config{Engine: eng, EngineTimeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		s, _ := h.NewSession()
		for c := range 128 {
			if _, err := s.Subscribe(ctx, fmt.Sprint("c", c), hub.SubscribeOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		eng.stalled.Store(true)
		unavailable := func(what string, err error) {
			t.Helper()
			var me *msg.Error
			if !errors.As(err, &me) || me.Code != msg.CodeUnavailable {
				t.Errorf("%s on a stalled engine: %v, want unavailable", what, err)
			}
		}
		calls := []struct {
			name string
			call func() error
		}{
			{"Publish", func() error { _, err := h.Publish(ctx, "c0", []byte("1")); return err }},
			{"History", func() error { _, _, err := h.History(ctx, "c0", 0, 10); return err }},
			{"Unsubscribe", func() error { return s.Unsubscribe(ctx, "c0") }},
			{"Subscribe", func() error {
				_, err := s.Subscribe(ctx, "new", hub.SubscribeOptions{From: &msg.Position{}})
				return err
			}},
		}
		for _, c := range calls {
			start := time.Now()
			unavailable(c.name, c.call())
			if d := time.Since(start); d != timeout {
				t.Errorf("%s took %v, want the engine timeout %v", c.name, d, timeout)
			}
		}

		// The caller's own deadline stays the caller's: a context error.
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		if _, err := h.Publish(cctx, "c0", []byte("1")); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Publish past the caller's deadline: %v", err)
		}
		cancel()

		eng.unsubscribes.Store(0)
		start := time.Now()
		s.Release()
		if d := time.Since(start); d != timeout {
			t.Errorf("Release of 127 channels took %v, want one engine timeout %v", d, timeout)
		}
		if n := eng.unsubscribes.Load(); n != 127 {
			t.Errorf("Release made %d Unsubscribe calls, want 127", n)
		}
		start = time.Now()
		if err := h.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Shutdown took %v with every session released", d)
		}
	})
}

// TestShutdownWithStalledEngineIsBounded: Shutdown of a hub whose
// sessions are released by their owners as they are closed returns after
// one EngineTimeout, although the engine answers nothing.
func TestShutdownWithStalledEngineIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 3 * time.Second
		eng := &stallEngine{Engine: memory.New(memory.Config{})}
		h, err := hub.New(context.Background(), hub.Config{Engine: eng, EngineTimeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for range 4 {
			s, _ := h.NewSession()
			for c := range 32 {
				if _, err := s.Subscribe(ctx, fmt.Sprint("c", c), hub.SubscribeOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			go func() { // the transport: releases once the hub closes it
				<-s.Done()
				s.Release()
			}()
		}
		eng.stalled.Store(true)
		start := time.Now()
		if err := h.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != timeout {
			t.Errorf("Shutdown took %v, want one engine timeout %v", d, timeout)
		}
	})
}
