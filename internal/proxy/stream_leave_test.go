package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestStreamClientLeaves: a client leaves in the middle of an endless
// response (an event stream). The proxy must let go of the origin at once:
// closing a body from http.ReadResponse reads it to its end, which for an
// event stream never comes, and a proxy stuck there cannot shut down.
func TestStreamClientLeaves(t *testing.T) {
	checkLeaks(t)
	origin := rawOrigin(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
		const event = "data: still going\n\n"
		chunk := fmt.Sprintf("%x\r\n%s\r\n", len(event), event)
		for { // an endless stream, until the proxy hangs up
			if _, err := io.WriteString(c, chunk); err != nil {
				return
			}
		}
	})
	p := startProxy(t, Config{Allow: loopback})
	c := dialProxy(t, p.addr)
	fmt.Fprintf(c, "GET http://%s/events HTTP/1.1\r\nHost: x\r\n\r\n", origin)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != "data: still going\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("proxy still busy with a stream whose client left: %v", err)
	}
}
