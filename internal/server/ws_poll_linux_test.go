//go:build linux

package server_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
)

// wsGoroutines counts the hub's goroutines running fn.
func wsGoroutines(fn string) int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), fn)
}

// TestWSIdleReadersPark: idle connections keep no reader or writer
// goroutine (epoll wakes a reader when data comes), yet they answer the
// hub's pings, receive messages and serve commands.
func TestWSIdleReadersPark(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{PingInterval: time.Second}})
	const n = 40
	var pings [n]atomic.Int32
	conns := make([]*websocket.Conn, n)
	var readers sync.WaitGroup
	frames := make([]chan wsFrame, n)
	for i := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, _, err := websocket.Dial(ctx, "ws://"+h.Addr+"/v1/ws", &websocket.DialOptions{
			OnPingReceived: func(context.Context, []byte) bool { pings[i].Add(1); return true },
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		frames[i] = make(chan wsFrame, 16)
		readers.Go(func() { // reading answers the hub's pings
			defer close(frames[i])
			for {
				f, err := wsReadE(c)
				if err != nil {
					return
				}
				frames[i] <- f
			}
		})
		wsSend(t, c, `{"id":1,"type":"subscribe","channel":"park"}`)
		if f := <-frames[i]; f.Type != "ok" {
			t.Fatalf("subscribe: %+v", f)
		}
	}
	waitParked := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, w := wsGoroutines("server.(*wsConn).readLoop"), wsGoroutines("server.(*wsConn).drain")
			if r == 0 && w == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d readers and %d writers still running for %d idle connections", r, w, n)
			}
			time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
		}
	}
	waitParked()
	// Several ping sweeps pass; every connection stays, because its
	// parked reader is woken for the pong.
	deadline := time.Now().Add(20 * time.Second)
	for i := range pings {
		for pings[i].Load() < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("connection %d saw %d pings", i, pings[i].Load())
			}
			time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
		}
	}
	if got := h.Hub.Stats().Sessions; got != n {
		t.Fatalf("%d sessions after the pings, want %d", got, n)
	}
	for round := range 3 {
		p := wsPublishREST(t, h, "park", fmt.Sprintf(`{"round":%d}`, round))
		for i := range frames {
			if f := <-frames[i]; f.Type != "message" || f.Offset != p.Offset {
				t.Fatalf("connection %d: %+v", i, f)
			}
		}
		waitParked()
	}
	for _, c := range conns {
		c.Close(websocket.StatusNormalClosure, "")
	}
	readers.Wait()
}
