package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
	"github.com/duplexhq/duplex/internal/engine/redis"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/redistest"
	"github.com/duplexhq/duplex/msg"
)

// startRedisHub starts a hub on the Redis at srv, with the engine's
// collectors on /metrics as `duplex serve` wires them (hubtest does).
func startRedisHub(t *testing.T, srv *redistest.Server) *hubtest.Hub {
	t.Helper()
	eng, err := redis.New(redis.Config{URL: srv.URL(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return hubtest.Start(t, &hubtest.Options{Engine: eng}) // which adds the engine's collectors
}

// health is one GET /healthz: its status and body.
func health(t *testing.T, c *http.Client, h *hubtest.Hub) (int, struct {
	Status string     `json:"status"`
	Error  *msg.Error `json:"error"`
}) {
	t.Helper()
	var body struct {
		Status string     `json:"status"`
		Error  *msg.Error `json:"error"`
	}
	resp, err := c.Get(h.URL + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("GET /healthz: %s: %v", b, err)
	}
	return resp.StatusCode, body
}

// TestHealthzFollowsRedis: /healthz says 200 ok while Redis answers, 503
// unavailable (the JSON error shape beside status) once it is gone, and
// 200 again when it is back, without a hub restart. Each answer comes
// from a real request while the real redis-server is down.
func TestHealthzFollowsRedis(t *testing.T) {
	hubtest.CheckLeaks(t)
	srv := redistest.Start(t, nil)
	h := startRedisHub(t, srv)
	c := testClient(t)
	if code, body := health(t, c, h); code != 200 || body.Status != "ok" || body.Error != nil {
		t.Fatalf("Redis up: %d %+v, want 200 ok", code, body)
	}
	back := srv.StopFor(3 * time.Second)
	// The last success stands for up to a second: ask until it lapses.
	for {
		code, body := health(t, c, h)
		if code == 200 {
			select {
			case <-back:
				t.Fatal("/healthz said ok for as long as Redis was down")
			default:
				continue
			}
		}
		if code != 503 || body.Status != "unavailable" || body.Error == nil || body.Error.Code != msg.CodeUnavailable {
			t.Fatalf("Redis down: %d %+v, want 503 unavailable with an error", code, body)
		}
		break
	}
	<-back
	for {
		code, body := health(t, c, h)
		if code == 200 && body.Status == "ok" {
			break
		}
		if code != 503 {
			t.Fatalf("Redis back: %d %+v", code, body)
		}
	}
}

// TestHealthzBoundedOnStalledRedis: a Redis that takes commands and does
// not answer them (CLIENT PAUSE ALL, for a minute) makes /healthz answer
// 503 while it is paused: the check never waits for Redis. If it did, the
// GET would hang until the client's 30 s guard gives up.
func TestHealthzBoundedOnStalledRedis(t *testing.T) {
	hubtest.CheckLeaks(t)
	srv := redistest.Start(t, nil)
	h := startRedisHub(t, srv)
	c := testClient(t)
	c.Timeout = 30 * time.Second // a hang guard, shorter than the pause
	if code, _ := health(t, c, h); code != 200 {
		t.Fatalf("Redis up: %d", code)
	}
	srv.MustDo("CLIENT", "PAUSE", "60000", "ALL")
	// Paused, Redis answers nobody (this test neither): kill it at the
	// end, by PID, which ends the pause for the hub's shutdown too.
	defer srv.Kill()
	// The last success stands for a second; past the guard, a 200 is a
	// health check that never asked Redis.
	guard := time.Now().Add(10 * time.Second)
	for {
		code, body := health(t, c, h)
		if code == 200 {
			if time.Now().After(guard) {
				t.Fatal("/healthz still says ok with Redis paused")
			}
			continue
		}
		if code != 503 || body.Status != "unavailable" || body.Error == nil || body.Error.Code != msg.CodeUnavailable {
			t.Fatalf("Redis paused: %d %+v", code, body)
		}
		break
	}
}

// TestMetricsAfterPubSubKill: once Redis has dropped the hub's pub/sub
// connection (CLIENT KILL TYPE pubsub) and the hub has subscribed again,
// /metrics shows one reconnect, one lost-delivery resync and the round
// trips of the publishes made.
func TestMetricsAfterPubSubKill(t *testing.T) {
	hubtest.CheckLeaks(t)
	srv := redistest.Start(t, nil)
	h := startRedisHub(t, srv)
	c := testClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := get(t, ctx, c, h.URL+"/v1/sse?channel=m")
	waitSubscribers(t, h, "m", 1)
	d := bench.NewSSEReader(resp.Body)
	publish(t, c, h.URL, "m", numbered(1))
	if ev := nextEvent(t, d, true); ev.Type != "message" {
		t.Fatalf("first event %+v", ev)
	}
	if n := srv.KillPubSub(); n != 1 {
		t.Fatalf("CLIENT KILL TYPE pubsub closed %d connections, want 1", n)
	}
	// Publish until one arrives live again: by then the engine has
	// reconnected and subscribed again.
	events := make(chan bench.SSEEvent)
	go func() {
		defer close(events)
		for {
			ev, err := d.Next()
			if err != nil {
				return
			}
			if !ev.Comment {
				events <- ev
			}
		}
	}()
	published := 1
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		published++
		publish(t, c, h.URL, "m", numbered(published))
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the stream ended")
			}
			if ev.Type == "message" {
				break wait
			}
		case <-tick.C:
		}
	}
	cancel()
	for range events {
	}

	mresp, err := c.Get(h.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{
		`(?m)^duplex_redis_pubsub_reconnects_total 1$`,
		`(?m)^duplex_lost_delivery_resyncs_total 1$`,
		`(?m)^duplex_redis_errors_total 0$`,
		`(?m)^duplex_redis_round_trip_seconds_bucket\{le="\+Inf"\} [1-9]\d*$`,
		`(?m)^duplex_redis_round_trip_seconds_bucket\{le="5e-05"\} \d+$`,
		`(?m)^duplex_redis_round_trip_seconds_count [1-9]\d*$`,
		`(?m)^duplex_redis_round_trip_seconds_sum [0-9.e-]+$`,
	} {
		if !regexp.MustCompile(want).Match(body) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
	count := regexp.MustCompile(`(?m)^duplex_redis_round_trip_seconds_count (\d+)$`).FindSubmatch(body)
	if n, _ := strconv.Atoi(string(count[1])); n < published {
		t.Errorf("round trips counted %d, want at least the %d publishes", n, published)
	}
}
