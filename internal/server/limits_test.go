package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

// slowPublishHead is the head of a publish that declares 100 bytes of body,
// followed by the first of them: what the slow-body clients of issue 10
// send before they go quiet.
const slowPublishHead = "POST /v1/channels/x/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"

// dialSend opens a connection to addr and writes head on it.
func dialSend(t *testing.T, addr, head string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	return c
}

// readAnswer reads one response from c, and, when it says Connection:
// close, checks that the hub then closes c. The read deadline is only a
// backstop against a hub that never answers: hitting it fails the test.
func readAnswer(t *testing.T, c net.Conn) (*http.Response, []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("answer body: %v", err)
	}
	if resp.Close {
		rest, err := io.ReadAll(br)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection left open after %s (read %q)", resp.Status, rest)
		}
	}
	return resp, body
}

// wantError checks that resp is a JSON error with status and code.
func wantError(t *testing.T, resp *http.Response, body []byte, status int, code msg.Code) {
	t.Helper()
	var eb msg.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil {
		t.Fatalf("%s: body %q is not a JSON error: %v", resp.Status, body, err)
	}
	if resp.StatusCode != status || eb.Error.Code != code {
		t.Fatalf("got %s %s (%s), want %d %s", resp.Status, eb.Error.Code, eb.Error.Message, status, code)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s with Content-Type %q", resp.Status, ct)
	}
}

// TestSlowBodiesCut is the repro of issue 10 §2: as many connections as
// --max-connections each send a publish's head and one byte of its body.
// Each is answered 408 request_timeout and closed, and the hub then serves
// a normal client.
func TestSlowBodiesCut(t *testing.T) {
	hubtest.CheckLeaks(t)
	const n = 50
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{
		MaxConnections: n, ReadHeaderTimeout: 2 * time.Second,
		BodyTimeout: 300 * time.Millisecond, BodyMinRate: -1,
	}})
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = dialSend(t, h.Addr, slowPublishHead)
	}
	for _, c := range conns {
		resp, body := readAnswer(t, c)
		wantError(t, resp, body, http.StatusRequestTimeout, msg.CodeRequestTimeout)
		if !resp.Close {
			t.Fatalf("408 without Connection: close: %v", resp.Header)
		}
	}
	if resp, body := do(t, "GET", h.URL+"/healthz", ""); resp.StatusCode != 200 {
		t.Fatalf("after the slow bodies: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, "POST", h.URL+"/v1/channels/x/messages", `{"after":"slow"}`); resp.StatusCode != 201 {
		t.Fatalf("publish after the slow bodies: %d %s", resp.StatusCode, body)
	}
}

// TestDribblingBodyCut: a body that keeps coming, one byte at a time, is
// cut by the minimum rate long before the total body timeout (an hour
// here) and before it is complete.
func TestDribblingBodyCut(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{
		BodyTimeout: time.Hour, BodyMinRate: 10, BodyGrace: 500 * time.Millisecond,
	}})
	c := dialSend(t, h.Addr, slowPublishHead)
	// One more byte every 250 ms (4 bytes/s, below the 10 bytes/s asked
	// for) until the hub answers.
	answered := make(chan struct{})
	sent := make(chan int, 1)
	go func() {
		n := 1
		defer func() { sent <- n }()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for n < 100 {
			select {
			case <-answered:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
			n++
		}
	}()
	resp, body := readAnswer(t, c)
	close(answered)
	wantError(t, resp, body, http.StatusRequestTimeout, msg.CodeRequestTimeout)
	if n := <-sent; n >= 100 {
		t.Fatalf("the whole body (%d bytes) went through before the cut", n)
	}
}

// TestUnreadBodyBounded: a body the endpoint does not read is bounded too.
// On GET (as on every method but POST) the hub reads and drops it before
// the handler runs, and answers 408 when it stalls; on a POST the handler
// answers (404) without reading, net/http's discard of the body is cut by the same
// deadline and the connection is closed after the answer.
func TestUnreadBodyBounded(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{
		BodyTimeout: 300 * time.Millisecond, BodyMinRate: -1,
	}})
	c := dialSend(t, h.Addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	resp, body := readAnswer(t, c)
	wantError(t, resp, body, http.StatusRequestTimeout, msg.CodeRequestTimeout)

	c = dialSend(t, h.Addr, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	resp, body = readAnswer(t, c)
	wantError(t, resp, body, http.StatusNotFound, msg.CodeNotFound)
	if !resp.Close {
		t.Fatalf("POST /healthz with a stalled body: connection kept")
	}

	// A whole body on GET is dropped and the request served.
	c = dialSend(t, h.Addr, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	if resp, body = readAnswer(t, c); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("GET with a whole body: %s %s, close %v", resp.Status, body, resp.Close)
	}
}

// TestPollOutlivesBodyDeadline: a long poll sent with a (complete) body
// waits out its timeout, long past the body deadline, which was cleared
// when the body ended: net/http's background read during the wait must not
// meet it and cancel the request. The connection then serves the next
// request. (SSE and NDJSON take their connection over, which clears
// deadlines anyway; a long poll does not.)
func TestPollOutlivesBodyDeadline(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{
		BodyTimeout: 50 * time.Millisecond, BodyMinRate: -1,
	}})
	c := dialSend(t, h.Addr, "GET /v1/poll?channel=outlive&timeout=0.5 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"cursor"`) {
		t.Fatalf("long poll with a body: %s %q, want its timeout answer", resp.Status, body)
	}
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("next request on the connection: %v %v", resp, err)
	}
}

// TestConnectionCapAnswers503: with every slot held by a slow body (no
// body bounds here), one more connection is answered 503 unavailable with
// Retry-After, and closed, instead of waiting in the accept queue.
func TestConnectionCapAnswers503(t *testing.T) {
	hubtest.CheckLeaks(t)
	const n = 50
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{
		MaxConnections: n, BodyTimeout: -1, BodyMinRate: -1,
	}})
	held := make([]net.Conn, n)
	for i := range held {
		held[i] = dialSend(t, h.Addr, slowPublishHead)
	}
	// The hub accepts in order: the next connection comes after the
	// n held ones, all still open.
	c := dialSend(t, h.Addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := readAnswer(t, c)
	wantError(t, resp, body, http.StatusServiceUnavailable, msg.CodeUnavailable)
	if resp.Header.Get("Retry-After") == "" || !resp.Close {
		t.Fatalf("503 without Retry-After or Connection: close: %v", resp.Header)
	}
	// A client that says nothing is answered as well.
	c, err := net.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, body = readAnswer(t, c)
	wantError(t, resp, body, http.StatusServiceUnavailable, msg.CodeUnavailable)

	// Freeing a slot lets a client in again.
	held[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := do(t, "GET", h.URL+"/healthz", "")
		if resp.StatusCode == 200 {
			break
		}
		if resp.StatusCode != 503 || time.Now().After(deadline) {
			t.Fatalf("after freeing a slot: %s %s", resp.Status, body)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}
