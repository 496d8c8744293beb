package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/msg"
)

// fastOpts are client options with short backoffs, so that tests that
// reconnect stay fast; the timeouts stay generous.
func fastOpts(t client.Transport) *client.DialOptions {
	return &client.DialOptions{
		Transport:   t,
		Proxy:       "direct",
		MinBackoff:  5 * time.Millisecond,
		MaxBackoff:  100 * time.Millisecond,
		PollTimeout: 5 * time.Second,
	}
}

func dialClient(t *testing.T, url string, opts *client.DialOptions) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("Dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func subscribe(t *testing.T, c *client.Client, channels []string, opts *client.SubscribeOptions) *client.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := c.Subscribe(ctx, channels, opts)
	if err != nil {
		t.Fatalf("Subscribe %v: %v", channels, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func publishN(t *testing.T, c *client.Client, channel string, from, to int) []msg.Published {
	t.Helper()
	var out []msg.Published
	for i := from; i <= to; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		p, err := c.Publish(ctx, channel, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)))
		cancel()
		if err != nil {
			t.Fatalf("Publish %s #%d: %v", channel, i, err)
		}
		out = append(out, p)
	}
	return out
}

// nextEvent returns the next event or fails the test after 15s.
func nextEvent(t *testing.T, s *client.Subscription) client.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ev, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v (transport %s)", err, s.Transport())
	}
	return ev
}

// dataN returns the "n" of a message's data.
func dataN(t *testing.T, e *msg.Envelope) int {
	t.Helper()
	var d struct{ N int }
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatalf("data %s: %v", e.Data, err)
	}
	return d.N
}

// expectMessages reads events until it has seen n messages, checking that
// they carry n = from, from+1, ... per channel, in offset order.
func expectMessages(t *testing.T, s *client.Subscription, want map[string][2]int) {
	t.Helper()
	next := make(map[string]int)
	total := 0
	for ch, r := range want {
		next[ch] = r[0]
		total += r[1] - r[0] + 1
	}
	var lastOff = make(map[string]uint64)
	for total > 0 {
		ev := nextEvent(t, s)
		if ev.Gap != nil {
			t.Fatalf("unexpected gap %+v", *ev.Gap)
		}
		m := ev.Message
		n := dataN(t, m)
		if n != next[m.Channel] {
			t.Fatalf("channel %s: got n=%d (offset %d), want n=%d", m.Channel, n, m.Offset, next[m.Channel])
		}
		if m.Offset <= lastOff[m.Channel] {
			t.Fatalf("channel %s: offset %d after %d", m.Channel, m.Offset, lastOff[m.Channel])
		}
		lastOff[m.Channel] = m.Offset
		next[m.Channel]++
		total--
	}
}
