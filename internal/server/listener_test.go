package server

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestCapListener: connections within the cap are accepted and counted,
// one over it reads busyResponse and then EOF, and closing an accepted
// connection frees its slot at once.
func TestCapListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newCapListener(inner, 2)
	defer l.Close()
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	a := <-accepted
	dial()
	<-accepted
	if n := l.live.Load(); n != 2 {
		t.Fatalf("%d live after two accepts", n)
	}
	over := dial()
	io.WriteString(over, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	over.SetReadDeadline(time.Now().Add(30 * time.Second)) // a backstop
	got, err := io.ReadAll(over)
	if err != nil || !bytes.Equal(got, busyResponse) {
		t.Fatalf("over the cap: %q, %v; want the busy answer and EOF", got, err)
	}
	a.Close()
	a.Close() // a second Close frees nothing more
	if n := l.live.Load(); n != 1 {
		t.Fatalf("%d live after a close, want 1", n)
	}
	dial()
	if c := <-accepted; c == nil {
		t.Fatal("no accept after a slot was freed")
	}
	l.Close()
	if _, ok := <-accepted; ok {
		t.Fatal("Accept went on after Close")
	}
}
