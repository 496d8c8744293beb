package cli

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/redistest"
)

// TestServeRedisMetricsAndHealth: `duplex serve --engine redis://…` wires
// the engine's series into /metrics (one publish: one round trip) and its
// health into /healthz (200 with Redis up, 503 with it killed).
func TestServeRedisMetricsAndHealth(t *testing.T) {
	srv := redistest.Start(t, nil)
	url, _ := startServe(t, "--engine", srv.URL())
	if code := Main(context.Background(), []string{"pub", "--url", url, "chat", `{"a":1}`}, Stdio{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard}); code != 0 {
		t.Fatalf("pub exit %d", code)
	}
	body := get(t, url+"/metrics", 200)
	for _, want := range []string{
		`(?m)^duplex_redis_round_trip_seconds_count 1$`,
		`(?m)^duplex_redis_pubsub_reconnects_total 0$`,
		`(?m)^duplex_lost_delivery_resyncs_total 0$`,
	} {
		if !regexp.MustCompile(want).MatchString(body) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	get(t, url+"/healthz", 200)
	srv.Kill()
	// The last success stands for a second; then the check asks Redis.
	guard := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			if time.Now().After(guard) {
				t.Fatal("/healthz still says ok with Redis killed")
			}
			continue
		}
		if resp.StatusCode != 503 || !strings.Contains(string(b), `"status":"unavailable"`) {
			t.Fatalf("/healthz with Redis killed: %d %s", resp.StatusCode, b)
		}
		break
	}
}

// get fetches url, wants status and returns the body.
func get(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, b, status)
	}
	return string(b)
}
