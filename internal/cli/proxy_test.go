package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// proxyOutBuffer is a bytes.Buffer safe for one writer and a polling reader.
type proxyOutBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *proxyOutBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *proxyOutBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestProxyRefusesOpenRelay(t *testing.T) {
	var out, errb proxyOutBuffer
	err := runProxy(context.Background(), Stdio{Out: &out, Err: &errb}, []string{"--listen", "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "open proxy") {
		t.Fatalf("got %v", err)
	}
}

func TestProxyServesAndStops(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "via proxy")
	}))
	defer origin.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb proxyOutBuffer
	done := make(chan error, 1)
	go func() {
		done <- runProxy(ctx, Stdio{Out: &out, Err: &errb}, []string{
			"--listen", "127.0.0.1:0", "--allow", "127.0.0.1/32", "--auth", "u:p",
			"--metrics", "127.0.0.1:0",
		})
	}()
	// Wait for the "listening on" line (polling; the command has no other
	// ready signal).
	var addr string
	deadline := time.Now().Add(20 * time.Second)
	for addr == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no listen line; stderr: %s", errb.String())
		}
		if s := out.String(); strings.Contains(s, "listening on ") {
			addr = strings.Fields(strings.SplitAfter(s, "listening on ")[1])[0]
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	pu, _ := url.Parse("http://u:p@" + addr)
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(origin.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "via proxy" {
		t.Fatalf("body %q", b)
	}
	tr.CloseIdleConnections()
	// The request is counted just after its response went out: poll.
	maddr := strings.Fields(strings.SplitAfter(out.String(), "metrics on ")[1])[0]
	for {
		mresp, err := http.Get(maddr)
		if err != nil {
			t.Fatal(err)
		}
		mb, _ := io.ReadAll(mresp.Body)
		mresp.Body.Close()
		if strings.Contains(string(mb), `duplex_proxy_requests_total{outcome="ok",proto="http"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics:\n%s", mb)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("runProxy: %v", err)
	}
	if !strings.Contains(errb.String(), `"outcome":"ok"`) {
		t.Errorf("no access log line: %s", errb.String())
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("still listening after cancel")
	}
}
