package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRunPublishCount(t *testing.T) {
	for _, client := range []string{ClientConn, ClientNetHTTP} {
		t.Run(client, func(t *testing.T) { testRunPublishCount(t, client) })
	}
}

func testRunPublishCount(t *testing.T, client string) {
	srv := httptest.NewServer(BaselineHandler())
	defer srv.Close()
	run, err := RunPublish(context.Background(), PublishConfig{
		URL: srv.URL, Name: "baseline", Publishers: 4, Count: 200, Duration: time.Minute, Client: client,
	})
	if err != nil {
		t.Fatal(err)
	}
	if run.Ops != 200 || run.Errors != 0 || run.Latency.Count != 200 {
		t.Errorf("ops %d, errors %d, latencies %d; want 200, 0, 200 (first error: %s)", run.Ops, run.Errors, run.Latency.Count, run.FirstError)
	}
	// The baseline serves process_cpu_seconds_total like the hub, and it
	// runs in this process here: both CPU figures are measured.
	if run.TargetCPU <= 0 || run.ClientCPU <= 0 {
		t.Errorf("CPU per publish: target %vµs, client %vµs; want both measured", run.TargetCPU, run.ClientCPU)
	}
	if run.Name != "baseline" || run.Workload != "publish" || run.Client != client || run.Clients != 4 || run.Rate <= 0 || run.Seconds <= 0 {
		t.Errorf("run = %+v", run)
	}
}

func TestRunPublishRequestAndErrors(t *testing.T) {
	for _, client := range []string{ClientConn, ClientNetHTTP} {
		t.Run(client, func(t *testing.T) { testRunPublishRequestAndErrors(t, client) })
	}
}

func testRunPublishRequestAndErrors(t *testing.T, client string) {
	var (
		mu         sync.Mutex // guards the three below
		seen       http.Header
		path, body string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.NotFound(w, r) // GET /metrics: this target has none
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen, path, body = r.Header.Clone(), r.URL.Path, string(b)
		mu.Unlock()
		http.Error(w, `{"error":{"code":"forbidden","message":"no"}}`, http.StatusForbidden)
	}))
	defer srv.Close()
	run, err := RunPublish(context.Background(), PublishConfig{
		URL: srv.URL + "/", Channel: "chat:1", Publishers: 1, Count: 3, Duration: time.Minute,
		Token: "tok", Data: []byte(`{"a":1}`), Client: client,
	})
	if err != nil {
		t.Fatal(err)
	}
	if run.Ops != 0 || run.Errors != 3 || !strings.Contains(run.FirstError, "403") {
		t.Errorf("ops %d, errors %d, first error %q; want 0, 3, a 403", run.Ops, run.Errors, run.FirstError)
	}
	mu.Lock()
	defer mu.Unlock()
	if path != "/v1/channels/chat:1/messages" || body != `{"a":1}` ||
		seen.Get("Authorization") != "Bearer tok" || seen.Get("Content-Type") != "application/json" {
		t.Errorf("request: path %q, body %q, headers %v", path, body, seen)
	}
}

func TestRunPublishBadConfig(t *testing.T) {
	for _, cfg := range []PublishConfig{
		{URL: "127.0.0.1:8080"},
		{URL: "ftp://127.0.0.1"},
		{URL: "http://127.0.0.1:1", Channel: "no spaces"},
		{URL: "http://127.0.0.1:1", Client: "curl"},
		{URL: "https://127.0.0.1:1", Client: ClientConn},
	} {
		if _, err := RunPublish(context.Background(), cfg); err == nil {
			t.Errorf("RunPublish(%+v) = nil error", cfg)
		}
	}
}
