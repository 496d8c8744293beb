package cli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startServe runs `duplex serve` in-process on 127.0.0.1:0 and returns its
// URL and a stop func that cancels it (as SIGINT does) and returns its exit
// code.
func startServe(t *testing.T, extra ...string) (url string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, append([]string{"serve", "--listen", "127.0.0.1:0"}, extra...), Stdio{In: strings.NewReader(""), Out: io.Discard, Err: pw})
		pw.Close()
	}()
	addrRe := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`)
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
			url = m[1]
			break
		}
	}
	if url == "" {
		cancel()
		t.Fatalf("serve did not say where it listens (exit %d)", <-code)
	}
	go io.Copy(io.Discard, pr) // keep draining the log
	var exit *int
	stop = func() int {
		if exit == nil {
			cancel()
			select {
			case c := <-code:
				exit = &c
			case <-time.After(30 * time.Second):
				t.Fatal("serve did not exit after cancel")
			}
		}
		return *exit
	}
	t.Cleanup(func() { stop() })
	return url, stop
}

func TestServeAndShutdown(t *testing.T) {
	url, stop := startServe(t, "--history-size", "3")
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"pub", "--url", url, "chat"}, Stdio{In: strings.NewReader("1\n\n{\"a\": 2}\n3\n4\n"), Out: &out, Err: io.Discard}); code != 0 {
		t.Fatalf("pub exit %d", code)
	}
	lines := strings.Fields(out.String())
	if len(lines) != 4 || !regexp.MustCompile(`^chat:[a-z0-9]+:4$`).MatchString(lines[3]) {
		t.Fatalf("pub printed %q", out.String())
	}
	resp, err := http.Get(url + "/v1/channels/chat/messages")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"oldest":2`) || !strings.Contains(string(body), `"data":{"a":2}`) {
		t.Fatalf("history-size not applied: %s", body)
	}
	if code := stop(); code != 0 {
		t.Fatalf("serve exit %d after SIGINT-like cancel, want 0", code)
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Fatal("hub still answering after shutdown")
	}
}

func TestServeHelpAndBadFlags(t *testing.T) {
	var errb bytes.Buffer
	if code := Main(context.Background(), []string{"serve", "--help"}, Stdio{Out: &errb, Err: io.Discard}); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, flag := range []string{"-listen", "-history-size", "-history-ttl", "-max-message", "-max-channels", "-allowed-origins", "-engine", "-jwt-secret", "-allow-anonymous", "-max-websockets", "-sse-retry", "-body-timeout", "-body-min-rate"} {
		if !strings.Contains(errb.String(), flag) {
			t.Errorf("serve --help does not list %s", flag)
		}
	}
	if code := Main(context.Background(), []string{"serve", "--nope"}, Stdio{Err: io.Discard, Out: io.Discard}); code != 2 {
		t.Fatalf("bad flag exit %d, want 2", code)
	}
	errb.Reset()
	if code := Main(context.Background(), []string{"serve", "--listen", "0.0.0.0:0"}, Stdio{Err: &errb, Out: io.Discard}); code != 1 || !strings.Contains(errb.String(), "allow-anonymous") {
		t.Fatalf("non-loopback without auth: exit %d %q", code, errb.String())
	}
	var out bytes.Buffer
	if code := Main(context.Background(), []string{"version"}, Stdio{Out: &out, Err: io.Discard}); code != 0 || !strings.HasPrefix(out.String(), "duplex ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := Main(context.Background(), []string{"frobnicate"}, Stdio{Out: io.Discard, Err: io.Discard}); code != 2 {
		t.Fatalf("unknown command exit %d", code)
	}
}

func TestServeSSERetryFlag(t *testing.T) {
	url, _ := startServe(t, "--sse-retry", "3s")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/sse?channel=c", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "retry: 3000\n" {
		t.Fatalf("first SSE line %q (%v), want the --sse-retry delay", line, err)
	}
}

// TestServeSaysWhatToTry: the start message names the demo page and a
// curl line that works as printed against that hub.
func TestServeSaysWhatToTry(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, []string{"serve", "--listen", "127.0.0.1:0"}, Stdio{In: strings.NewReader(""), Out: io.Discard, Err: pw})
		pw.Close()
	}()
	defer func() {
		cancel()
		<-code
	}()
	sc := bufio.NewScanner(pr)
	var lines []string
	for len(lines) < 3 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	go io.Copy(io.Discard, pr)
	if len(lines) < 3 {
		t.Fatalf("start message %q", lines)
	}
	m := regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`).FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("first line %q", lines[0])
	}
	if lines[1] != "  demo page: "+m[1]+"/" {
		t.Fatalf("second line %q", lines[1])
	}
	try, ok := strings.CutPrefix(lines[2], "  try:       ")
	if !ok || !strings.HasPrefix(try, "curl ") {
		t.Fatalf("third line %q", lines[2])
	}
	out, err := exec.Command("bash", "-c", try).Output()
	if err != nil || !regexp.MustCompile(`^\{"channel":"chat","epoch":"[a-z0-9]+","offset":1,`).Match(out) {
		t.Fatalf("%s: %q, %v", try, out, err)
	}
}

// TestServeSlowBodiesRepro drives issue 10 §2's repro through `duplex
// serve` with its flags (--max-connections 50 --header-timeout 2s): 50
// connections each send a publish's head declaring 100 bytes and one byte
// of it. With a short --body-timeout they are answered 408 and closed and
// /healthz is served after them; with no body bounds, the cap stays full
// and /healthz is answered 503 with Retry-After at once instead of waiting.
func TestServeSlowBodiesRepro(t *testing.T) {
	repro := []string{"--max-connections", "50", "--header-timeout", "2s"}
	const head = "POST /v1/channels/x/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
	hold := func(t *testing.T, url string) []net.Conn {
		t.Helper()
		addr := strings.TrimPrefix(url, "http://")
		conns := make([]net.Conn, 50)
		for i := range conns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if _, err := io.WriteString(c, head); err != nil {
				t.Fatal(err)
			}
			conns[i] = c
		}
		return conns
	}
	healthz := func(t *testing.T, url string) (int, http.Header) {
		t.Helper()
		c := &http.Client{Timeout: 30 * time.Second} // a backstop: hitting it fails
		resp, err := c.Get(url + "/healthz")
		if err != nil {
			t.Fatalf("healthz: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}

	t.Run("cut", func(t *testing.T) {
		url, _ := startServe(t, append(repro, "--body-timeout", "300ms")...)
		for _, c := range hold(t, url) {
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
				t.Fatalf("slow body: %v %v, want 408 and Connection: close", resp, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), `"code":"request_timeout"`) {
				t.Fatalf("408 body %s", body)
			}
		}
		if code, _ := healthz(t, url); code != 200 {
			t.Fatalf("healthz after the slow bodies: %d", code)
		}
	})
	t.Run("full", func(t *testing.T) {
		url, _ := startServe(t, append(repro, "--body-timeout", "0", "--body-min-rate", "0")...)
		hold(t, url)
		code, h := healthz(t, url)
		if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Fatalf("healthz with the cap full: %d %v, want 503 with Retry-After", code, h)
		}
	})
}
