package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestGracefulShutdown(t *testing.T) {
	checkLeaks(t)
	echo := echoOrigin(t)
	origin := newOrigin(t)
	p := startProxy(t, Config{Allow: loopback})

	tunnel, code := httpConnectDial(t, p.addr, echo)
	if code != 200 {
		t.Fatal(code)
	}
	// A keep-alive client between requests.
	ka := dialProxy(t, p.addr)
	fmt.Fprintf(ka, "GET %s/ka HTTP/1.1\r\nHost: x\r\n\r\n", origin.URL)
	kbr := bufio.NewReader(ka)
	resp, err := http.ReadResponse(kbr, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	// A client still in its handshake.
	hs := dialProxy(t, p.addr)
	hs.Write([]byte{5})
	for p.metrics.accepted.Load() < 3 {
		time.Sleep(time.Millisecond) // polling
	}

	done := make(chan error, 1)
	go func() { done <- p.Shutdown(context.Background()) }()
	// Idle and handshaking connections are closed at once.
	if _, err := kbr.ReadByte(); err == nil {
		t.Fatal("keep-alive connection not closed")
	}
	if _, err := hs.Read(make([]byte, 1)); err == nil {
		t.Fatal("handshaking connection not closed")
	}
	// New connections are refused.
	if c, err := net.Dial("tcp", p.addr); err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			t.Fatal("accepted after Shutdown")
		}
		c.Close()
	}
	// The tunnel still works, and Shutdown waits for it.
	io.WriteString(tunnel, "still here")
	b := make([]byte, 10)
	if _, err := io.ReadFull(tunnel, b); err != nil || string(b) != "still here" {
		t.Fatalf("tunnel during shutdown: %q %v", b, err)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a tunnel open", err)
	default:
	}
	tunnel.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestForcedShutdown(t *testing.T) {
	checkLeaks(t)
	echo := echoOrigin(t)
	p := startProxy(t, Config{Allow: loopback})
	tunnel, code := httpConnectDial(t, p.addr, echo)
	if code != 200 {
		t.Fatal(code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := tunnel.Read(make([]byte, 1)); err == nil {
		t.Fatal("tunnel survived a forced shutdown")
	}
}

// TestIdleTimeout: a tunnel with traffic in either direction, even in one
// direction only, outlives IdleTimeout; a silent one is closed.
func TestIdleTimeout(t *testing.T) {
	checkLeaks(t)
	// Beats 50ms apart for longer than the idle timeout; a beat delayed by
	// a loaded machine has most of a second of slack before it counts as
	// silence.
	const idle = 600 * time.Millisecond
	const beats = 16 // 16 × 50ms > idle
	pusher := rawOrigin(t, func(c net.Conn) {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for range beats {
			<-tick.C
			if _, err := c.Write([]byte{'.'}); err != nil {
				return
			}
		}
		io.Copy(io.Discard, c) // then silence until the proxy gives up
	})
	echo := echoOrigin(t)
	p := startProxy(t, Config{Allow: loopback, IdleTimeout: idle})

	t.Run("origin pushes, client silent", func(t *testing.T) {
		c, code := httpConnectDial(t, p.addr, pusher)
		if code != 200 {
			t.Fatal(code)
		}
		b, err := io.ReadAll(c) // EOF when the proxy closes the idle tunnel
		if err != nil || len(b) != beats {
			t.Fatalf("got %d bytes, %v; want %d then EOF", len(b), err, beats)
		}
	})
	t.Run("client trickles", func(t *testing.T) {
		c, code := httpConnectDial(t, p.addr, echo)
		if code != 200 {
			t.Fatal(code)
		}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := range beats {
			<-tick.C
			c.Write([]byte{'x'})
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatalf("beat %d: %v", i, err)
			}
		}
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Fatalf("after silence: %q %v", b, err)
		}
	})
	if !contains(p.log.String(), `"outcome":"idle_timeout"`) {
		waitIdle(t, p)
		if !contains(p.log.String(), `"outcome":"idle_timeout"`) {
			t.Errorf("no idle_timeout in log:\n%s", p.log.String())
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestListenAndServe(t *testing.T) {
	checkLeaks(t)
	s, err := New(Config{Allow: loopback, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx, "127.0.0.1:0", time.Second) }()
	<-s.Ready()
	echo := echoOrigin(t)
	c, code := httpConnectDial(t, s.Addr().String(), echo)
	if code != 200 {
		t.Fatal(code)
	}
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ListenAndServe: %v", err)
	}
}
