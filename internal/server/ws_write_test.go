package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
)

// The hub frames its own data frames (ws_write.go): every payload length
// form of RFC 6455 §5.2 (7-bit, 16-bit, 64-bit), read back by a client
// library nobody here wrote, intact and in order — with nothing held, and
// with a budget always exceeded, which holds them into shared writes.
func TestWSFrameLengths(t *testing.T) {
	for _, delay := range []time.Duration{-1, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("delay=%v", delay), func(t *testing.T) {
			hubtest.CheckLeaks(t)
			h := hubtest.Start(t, &hubtest.Options{
				Hub:    hub.Config{MaxMessage: 300 << 10},
				Server: server.Config{WriteDelay: delay, WriteBudget: 1e-9},
			})
			c := wsDial(t, h, "/v1/ws")
			wsSend(t, c, `{"id":1,"type":"subscribe","channel":"big"}`)
			if f := wsRead(t, c); f.Type != "ok" {
				t.Fatalf("subscribe reply %+v", f)
			}
			// Data sizes around each boundary of the header's length forms
			// (the envelope adds its own bytes around the data).
			sizes := []int{1, 60, 125, 126, 200, 65000, 65535, 65536, 70000, 200000}
			for _, n := range sizes {
				wsPublishREST(t, h, "big", `"`+strings.Repeat("x", n)+`"`)
			}
			for i, n := range sizes {
				f := wsRead(t, c)
				var s string
				if f.Type != "message" || f.Offset != uint64(i+1) || json.Unmarshal(f.Data, &s) != nil || len(s) != n {
					t.Fatalf("message %d: type %q offset %d, %d data bytes, want %d", i+1, f.Type, f.Offset, len(f.Data), n+2)
				}
			}
			wsPing(t, c, "end")
			c.Close(websocket.StatusNormalClosure, "")
		})
	}
}

// /v1/echo through the hub's framing: text and binary, small and large.
func TestWSEchoFrameLengths(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Hub: hub.Config{MaxMessage: 300 << 10}})
	c := wsDial(t, h, "/v1/echo")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, n := range []int{0, 125, 126, 65535, 65536, 100000} {
		for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
			b := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
			if err := c.Write(ctx, typ, b); err != nil {
				t.Fatal(err)
			}
			gotTyp, got, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("echo of %d bytes (%v): %v", n, typ, err)
			}
			if gotTyp != typ || !bytes.Equal(got, b) {
				t.Fatalf("echo of %d bytes (%v): got %v, %d bytes", n, typ, gotTyp, len(got))
			}
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// Under the write budget nothing waits for a timer: with windows of an
// hour (--write-delay 1h) and the default budget, a lone message goes out
// at once, and so does the next one to the same connection in the same
// window — a fixed delay would hold it for the hour.
func TestWSLoneMessageNotHeld(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{WriteDelay: time.Hour}})
	c := wsDial(t, h, "/v1/ws")
	wsSend(t, c, `{"id":1,"type":"subscribe","channel":"lone"}`)
	if f := wsRead(t, c); f.Type != "ok" {
		t.Fatalf("subscribe reply %+v", f)
	}
	for i := uint64(1); i <= 3; i++ {
		wsPublishREST(t, h, "lone", fmt.Sprint(i))
		if f := wsRead(t, c); f.Type != "message" || f.Offset != i {
			t.Fatalf("frame %+v, want message %d", f, i)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// Over the write budget, messages for a connection already written to in
// the current window are held, and a reply never is: with a budget that
// pays for no write and windows of an hour, a held message comes only
// with the next reply, in order, and every publish on the connection is
// acknowledged at once.
func TestWSWriteCoalescing(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{WriteDelay: time.Hour, WriteBudget: 1e-9}})
	c := wsDial(t, h, "/v1/ws")
	frames := make(chan wsFrame, 256)
	go func() {
		defer close(frames)
		for {
			f, err := wsReadE(c)
			if err != nil {
				return
			}
			frames <- f
		}
	}()
	next := func() wsFrame {
		t.Helper()
		select {
		case f, ok := <-frames:
			if !ok {
				t.Fatal("connection ended")
			}
			return f
		case <-time.After(10 * time.Second):
			t.Fatal("no frame within 10s: a reply was held")
		}
		return wsFrame{}
	}
	wsSend(t, c, `{"id":1,"type":"subscribe","channel":"co"}`)
	if f := next(); f.Type != "ok" {
		t.Fatalf("subscribe reply %+v", f)
	}
	// Written to this window (the reply): the messages wait.
	wsPublishREST(t, h, "co", `1`)
	wsPublishREST(t, h, "co", `2`)
	select {
	case f := <-frames:
		t.Fatalf("a message was not held: %+v", f)
	case <-time.After(300 * time.Millisecond):
	}
	// A reply is written at once, after what was held.
	wsSend(t, c, `{"id":"p","type":"ping"}`)
	for i, want := range []string{"message", "message", "pong"} {
		if f := next(); f.Type != want || (want == "message" && f.Offset != uint64(i+1)) {
			t.Fatalf("frame %d: %+v, want a %s", i, f, want)
		}
	}
	// Publishing on the connection: each acknowledgement comes at once,
	// the held messages with it.
	seen := uint64(2) // the last message offset received
	for i := 3; i <= 52; i++ {
		wsSend(t, c, fmt.Sprintf(`{"id":%d,"type":"publish","channel":"co","data":%d}`, i, i))
		for {
			f := next()
			if f.Type == "message" {
				if f.Offset != seen+1 {
					t.Fatalf("message %d after %d", f.Offset, seen)
				}
				seen = f.Offset
				continue
			}
			if f.Type != "ok" || f.id() != fmt.Sprint(i) || f.Offset != uint64(i) {
				t.Fatalf("publish %d reply %+v", i, f)
			}
			break
		}
	}
	// A message held, then shutdown: the close frame comes at once, not
	// at the window's end. (A closing session drops what it still queues:
	// the client resumes from its cursor, as after any close.)
	wsPublishREST(t, h, "co", `53`)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		h.Stop(t)
	}()
	// On the Redis engine a delivery may trail its publish's ok (see
	// docs/protocol.md), so messages up to 53 not yet seen may come too,
	// in order; nothing else.
	for f := range frames {
		if f.Type != "message" || f.Offset != seen+1 || f.Offset > 53 {
			t.Fatalf("after shutdown, after message %d: %+v", seen, f)
		}
		seen = f.Offset
	}
	<-stopped
}

// Many connections through the shared writers at once, with a budget
// always exceeded and a short window so the ready and later lists,
// expediting and window ends all interleave: each connection pings while it receives, a third of
// them leave half-way, and every one that stays gets every message once,
// in order, and every pong.
func TestWSWritersConcurrent(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{WriteDelay: 3 * time.Millisecond, WriteBudget: 1e-9}})
	const conns, msgs, pings = 30, 300, 20
	type result struct {
		i      int
		got    int
		pongs  int
		err    error
		leaver bool
	}
	results := make(chan result, conns)
	subscribed := make(chan struct{}, conns)
	for i := range conns {
		c := wsDial(t, h, "/v1/ws")
		go func() {
			r := result{i: i, leaver: i%3 == 0}
			defer func() { results <- r }()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := c.Write(ctx, websocket.MessageText, []byte(`{"id":0,"type":"subscribe","channel":"many"}`)); err != nil {
				r.err = err
				return
			}
			sentPings := 0
			for r.got < msgs || r.pongs < pings {
				_, b, err := c.Read(ctx)
				if err != nil {
					r.err = err
					return
				}
				var f wsFrame
				if err := json.Unmarshal(b, &f); err != nil {
					r.err = err
					return
				}
				switch f.Type {
				case "ok":
					subscribed <- struct{}{}
				case "message":
					r.got++
					if f.Offset != uint64(r.got) {
						r.err = fmt.Errorf("offset %d, want %d", f.Offset, r.got)
						return
					}
				case "pong":
					r.pongs++
				default:
					r.err = fmt.Errorf("frame %s", b)
					return
				}
				// A ping after every 15th message, while messages flow.
				if f.Type == "message" && r.got%15 == 0 && sentPings < pings {
					sentPings++
					if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"id":%d,"type":"ping"}`, sentPings)); err != nil {
						r.err = err
						return
					}
				}
				if r.leaver && r.got == msgs/2 {
					c.CloseNow()
					return
				}
			}
			c.Close(websocket.StatusNormalClosure, "")
		}()
	}
	for range conns {
		<-subscribed
	}
	var wg sync.WaitGroup
	for p := range 3 { // three publishers at once
		wg.Go(func() {
			for n := p; n < msgs; n += 3 {
				if _, err := h.Hub.Publish(context.Background(), "many", fmt.Append(nil, n)); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for range conns {
		r := <-results
		switch {
		case r.leaver:
			if r.got != msgs/2 {
				t.Errorf("leaver %d: %d messages before leaving (%v)", r.i, r.got, r.err)
			}
		case r.err != nil || r.got != msgs || r.pongs != pings:
			t.Errorf("connection %d: %d messages, %d pongs: %v", r.i, r.got, r.pongs, r.err)
		}
	}
}
