package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
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

func do(t *testing.T, method, url, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestPublishAndHistory(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	var epoch string
	for i := 1; i <= 5; i++ {
		resp, body := do(t, "POST", h.URL+"/v1/channels/chat/messages", fmt.Sprintf(`{"n": %d}`, i))
		if resp.StatusCode != 201 {
			t.Fatalf("publish: %d %s", resp.StatusCode, body)
		}
		var p msg.Published
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if p.Channel != "chat" || p.Offset != uint64(i) || !msg.ValidEpoch(p.Epoch) || p.Time == 0 {
			t.Fatalf("publish reply %+v", p)
		}
		epoch = p.Epoch
	}

	resp, body := do(t, "GET", h.URL+"/v1/channels/chat/messages?after=1&limit=2", "")
	var page msg.History
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || page.Epoch != epoch || len(page.Messages) != 2 || page.Messages[0].Offset != 2 ||
		string(page.Messages[1].Data) != `{"n":3}` || page.Next != 3 || page.Oldest != 1 || page.Latest != 5 {
		t.Fatalf("history page: %d %s", resp.StatusCode, body)
	}
	if page.Messages[0].Type != "message" || page.Messages[0].Channel != "chat" {
		t.Fatalf("envelope %+v", page.Messages[0])
	}

	resp, body = do(t, "GET", h.URL+"/v1/channels/chat", "")
	var info msg.ChannelInfo
	json.Unmarshal(body, &info)
	if resp.StatusCode != 200 || info.Epoch != epoch || info.Latest != 5 || info.Oldest != 1 {
		t.Fatalf("info %s", body)
	}
}

func TestHistoryCaching(t *testing.T) {
	h := hubtest.Start(t, nil)
	for i := range 3 {
		do(t, "POST", h.URL+"/v1/channels/c/messages", fmt.Sprint(i))
	}
	// A full page: immutable, strong ETag, 304 on If-None-Match.
	full := h.URL + "/v1/channels/c/messages?after=0&limit=2"
	resp, body := do(t, "GET", full, "")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Fatalf("full page: %d %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	if !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") {
		t.Fatalf("ETag %q is not strong", etag)
	}
	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		resp, b := do(t, "GET", full, "", "If-None-Match", inm)
		if resp.StatusCode != 304 || len(b) != 0 || resp.Header.Get("ETag") != etag {
			t.Fatalf("If-None-Match %s: %d %q etag %q", inm, resp.StatusCode, b, resp.Header.Get("ETag"))
		}
	}
	if resp, _ := do(t, "GET", full, "", "If-None-Match", `"nope"`); resp.StatusCode != 200 {
		t.Fatalf("non-matching If-None-Match: %d", resp.StatusCode)
	}
	_ = body

	// A partial page: no-cache, and its ETag changes when a message arrives.
	partial := h.URL + "/v1/channels/c/messages?after=2&limit=10"
	resp, _ = do(t, "GET", partial, "")
	etag1 := resp.Header.Get("ETag")
	if resp.Header.Get("Cache-Control") != "no-cache" || etag1 == "" {
		t.Fatalf("partial page: %q %q", resp.Header.Get("Cache-Control"), etag1)
	}
	if resp, _ := do(t, "GET", partial, "", "If-None-Match", etag1); resp.StatusCode != 304 {
		t.Fatalf("unchanged partial page: %d", resp.StatusCode)
	}
	do(t, "POST", h.URL+"/v1/channels/c/messages", "99")
	resp, b := do(t, "GET", partial, "", "If-None-Match", etag1)
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == etag1 || !strings.Contains(string(b), `"data":99`) {
		t.Fatalf("changed partial page: %d etag %q body %s", resp.StatusCode, resp.Header.Get("ETag"), b)
	}
	// The full page is byte-for-byte the same messages later.
	_, b2 := do(t, "GET", full, "")
	var p1, p2 msg.History
	json.Unmarshal(body, &p1)
	json.Unmarshal(b2, &p2)
	if fmt.Sprint(p1.Messages) != fmt.Sprint(p2.Messages) {
		t.Fatalf("full page changed")
	}
}

func TestBadInput(t *testing.T) {
	h := hubtest.Start(t, nil)
	long := strings.Repeat("x", 129)
	tests := []struct {
		method, path, body string
		status             int
		code               msg.Code
	}{
		{"POST", "/v1/channels/b%20ad/messages", "1", 400, msg.CodeInvalidChannel},
		{"POST", "/v1/channels/" + long + "/messages", "1", 400, msg.CodeInvalidChannel},
		{"POST", "/v1/channels/a%2Fb/messages", "1", 400, msg.CodeInvalidChannel},
		{"POST", "/v1/channels/c/messages", "{bad", 400, msg.CodeInvalidJSON},
		{"POST", "/v1/channels/c/messages", "", 400, msg.CodeInvalidJSON},
		{"POST", "/v1/channels/c/messages", "1 2", 400, msg.CodeInvalidJSON},
		{"POST", "/v1/channels/c/messages", `"` + strings.Repeat("y", 70000) + `"`, 413, msg.CodeTooLarge},
		{"GET", "/v1/channels/b$d/messages", "", 400, msg.CodeInvalidChannel},
		{"GET", "/v1/channels/b$d", "", 400, msg.CodeInvalidChannel},
		{"GET", "/v1/channels/c/messages?after=-1", "", 400, msg.CodeBadRequest},
		{"GET", "/v1/channels/c/messages?after=x", "", 400, msg.CodeBadRequest},
		{"GET", "/v1/channels/c/messages?after=", "", 400, msg.CodeBadRequest},
		{"GET", "/v1/channels/c/messages?after=99999999999999999999999", "", 400, msg.CodeBadRequest},
		{"GET", "/v1/channels/c/messages?limit=0", "", 400, msg.CodeBadRequest},
		{"GET", "/v1/channels/c/messages?limit=1001", "", 400, msg.CodeBadRequest},
		{"GET", "/v1/channels/c/messages?limit=abc", "", 400, msg.CodeBadRequest},
		{"GET", "/nope", "", 404, msg.CodeNotFound},
		{"GET", "/v1/nope/deeper", "", 404, msg.CodeNotFound},
		{"DELETE", "/v1/channels/c/messages", "", 405, msg.CodeMethodNotAllow},
		{"PUT", "/v1/channels/c", "", 405, msg.CodeMethodNotAllow},
		{"POST", "/v1/echo", "", 405, msg.CodeMethodNotAllow},
		{"POST", "/healthz", "", 404, msg.CodeNotFound}, // only GET /healthz exists: the catch-all's JSON 404
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := do(t, tt.method, h.URL+tt.path, tt.body)
			var eb msg.ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil {
				t.Fatalf("status %d, body not a JSON error: %q", resp.StatusCode, body)
			}
			if resp.StatusCode != tt.status || eb.Error.Code != tt.code || eb.Error.Message == "" {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			if tt.status == 405 && resp.Header.Get("Allow") == "" {
				t.Fatalf("405 without Allow")
			}
		})
	}
	// The hub is unharmed.
	if resp, body := do(t, "POST", h.URL+"/v1/channels/c/messages", `"ok"`); resp.StatusCode != 201 {
		t.Fatalf("after bad input: %d %s", resp.StatusCode, body)
	}
}

// TestOversizedBodyRefusedUnread: a body announced larger than the limit is
// refused with 413 before the client has sent any of it.
func TestOversizedBodyRefusedUnread(t *testing.T) {
	h := hubtest.Start(t, nil)
	conn, err := net.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST /v1/channels/c/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n")
	// Send no body: the answer must come anyway.
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 || !strings.Contains(string(body), "message_too_large") {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}

	// A chunked body with no length is cut at the limit.
	pr, pw := io.Pipe()
	go func() {
		chunk := []byte(strings.Repeat(" ", 64<<10))
		for range 100 { // 6.4 MB of whitespace, far over the limit
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", h.URL+"/v1/channels/c/messages", pr)
	req.ContentLength = -1
	resp3, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b3, _ := io.ReadAll(resp3.Body)
	resp3.Body.Close()
	pr.CloseWithError(io.ErrClosedPipe)
	if resp3.StatusCode != 413 {
		t.Fatalf("chunked oversized: %d %s", resp3.StatusCode, b3)
	}
}

func TestEchoHealthMetrics(t *testing.T) {
	h := hubtest.Start(t, nil)
	resp, body := do(t, "GET", h.URL+"/v1/echo", "", "X-Test", "yes")
	var e struct {
		Method     string              `json:"method"`
		RemoteAddr string              `json:"remote_addr"`
		Headers    map[string][]string `json:"headers"`
	}
	json.Unmarshal(body, &e)
	if resp.StatusCode != 200 || e.Method != "GET" || !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") || e.Headers["X-Test"][0] != "yes" {
		t.Fatalf("echo: %s", body)
	}
	if resp, body := do(t, "GET", h.URL+"/healthz", ""); resp.StatusCode != 200 || !strings.Contains(string(body), "ok") {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	do(t, "POST", h.URL+"/v1/channels/m/messages", "1")
	if resp, body := do(t, "GET", h.URL+"/metrics", ""); resp.StatusCode != 200 || !strings.Contains(string(body), "duplex_published_total 1") {
		t.Fatalf("metrics: %d %s", resp.StatusCode, body)
	}
}

func TestCORS(t *testing.T) {
	h := hubtest.Start(t, nil)
	resp, _ := do(t, "OPTIONS", h.URL+"/v1/channels/c/messages", "", "Origin", "http://localhost:3000", "Access-Control-Request-Method", "POST")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Fatalf("localhost preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = do(t, "OPTIONS", h.URL+"/v1/channels/c/messages", "", "Origin", "https://evil.example", "Access-Control-Request-Method", "POST")
	if resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign preflight: %d", resp.StatusCode)
	}
	resp, _ = do(t, "GET", h.URL+"/v1/channels/c", "", "Origin", "https://evil.example")
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin got CORS headers")
	}
}

// TestSlowHeadersCut: a client that sends half a request line and then
// nothing is disconnected by the header timeout; the hub keeps serving.
func TestSlowHeadersCut(t *testing.T) {
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{ReadHeaderTimeout: 200 * time.Millisecond}})
	var conns []net.Conn
	for range 50 {
		c, err := net.Dial("tcp", h.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET /v1/channels/c HTTP/1.1\r\nHost: x\r\nX-Slow: ")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		// The hub must close it: reads end with EOF or a reset, not our
		// own (generous) deadline.
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("a silent client was not disconnected (read %q)", b)
		}
	}
	if resp, body := do(t, "GET", h.URL+"/healthz", ""); resp.StatusCode != 200 {
		t.Fatalf("after slow clients: %d %s", resp.StatusCode, body)
	}
}
