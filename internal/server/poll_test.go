package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

// poll runs one long poll and decodes its answer.
func poll(t testing.TB, ctx context.Context, c *http.Client, url string) msg.PollResponse {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("poll: %v", err)
		return msg.PollResponse{}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("poll: %s %s %v", resp.Status, body, err)
		return msg.PollResponse{}
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	var pr msg.PollResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		t.Errorf("poll: %v in %s", err, body)
	}
	if pr.Messages == nil || pr.Gaps == nil || !strings.Contains(string(body), `"messages":[`) {
		t.Errorf("poll: lists must be present, even empty: %s", body)
	}
	return pr
}

func offsets(pr msg.PollResponse) []uint64 {
	var o []uint64
	for _, m := range pr.Messages {
		o = append(o, m.Offset)
	}
	return o
}

func TestPollTimeoutAnswer(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	c := testClient(t)
	p := publish(t, c, h.URL, "a", `1`)
	// Without a cursor: start at now; the timeout answer carries where now
	// is, for every channel asked (b was never published: offset 0, with a
	// fresh epoch on memory, the empty one on Redis, which keeps no key
	// for a channel only read; see hub.Engine.History).
	pr := poll(t, context.Background(), c, h.URL+"/v1/poll?channel=a&channel=b&timeout=30ms")
	if len(pr.Messages) != 0 || len(pr.Gaps) != 0 {
		t.Fatalf("timeout answer not empty: %+v", pr)
	}
	cur, err := msg.ParseCursor(pr.Cursor)
	if err != nil || cur["a"] != (msg.Position{Epoch: p.Epoch, Offset: 1}) || cur["b"].Offset != 0 {
		t.Fatalf("cursor %q (%v)", pr.Cursor, err)
	}
	// The same cursor, given back, times out the same way.
	pr2 := poll(t, context.Background(), c, h.URL+"/v1/poll?channel=a&channel=b&timeout=0.03&cursor="+pr.Cursor)
	if pr2.Cursor != pr.Cursor || len(pr2.Messages) != 0 {
		t.Fatalf("second poll %+v, want empty at %s", pr2, pr.Cursor)
	}
}

func TestPollBatchAnswer(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	c := testClient(t)
	var ep string
	for i := 1; i <= 3; i++ {
		ep = publish(t, c, h.URL, "a", numbered(i)).Epoch
	}
	// Everything waiting after the cursor comes as one batch, at once.
	pr := poll(t, context.Background(), c, h.URL+"/v1/poll?channel=a&cursor=a:"+ep+":0&timeout=60s")
	if got := offsets(pr); len(got) != 3 || got[0] != 1 || got[2] != 3 || pr.Cursor != "a:"+ep+":3" {
		t.Fatalf("batch %v, cursor %s", got, pr.Cursor)
	}
	if string(pr.Messages[1].Data) != `{"n":2}` {
		t.Errorf("data %s", pr.Messages[1].Data)
	}
	// A poll that waits answers as soon as a message comes.
	done := make(chan msg.PollResponse, 1)
	go func() {
		done <- poll(t, context.Background(), c, h.URL+"/v1/poll?channel=a&timeout=60&cursor="+pr.Cursor)
	}()
	waitSubscribers(t, h, "a", 1)
	publish(t, c, h.URL, "a", numbered(4))
	pr = <-done
	if got := offsets(pr); len(got) != 1 || got[0] != 4 || pr.Cursor != "a:"+ep+":4" {
		t.Fatalf("live answer %v, cursor %s", got, pr.Cursor)
	}
}

func TestPollManyPollersOneChannel(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	c := testClient(t)
	p := publish(t, c, h.URL, "a", `0`)
	const n = 200
	var wg sync.WaitGroup
	answers := make([]msg.PollResponse, n)
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer cl.CloseIdleConnections()
	for i := range n {
		wg.Go(func() {
			answers[i] = poll(t, context.Background(), cl, h.URL+"/v1/poll?channel=a&timeout=60s&cursor=a:"+p.Epoch+":1")
		})
	}
	waitSubscribers(t, h, "a", n)
	publish(t, c, h.URL, "a", `"for all"`)
	wg.Wait()
	for i, pr := range answers {
		if got := offsets(pr); len(got) != 1 || got[0] != 2 || pr.Cursor != "a:"+p.Epoch+":2" {
			t.Fatalf("poller %d: %v cursor %s", i, got, pr.Cursor)
		}
	}
}

func TestPollGap(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Memory: memory.Config{HistorySize: 5}})
	c := testClient(t)
	var ep string
	for i := 1; i <= 10; i++ {
		ep = publish(t, c, h.URL, "a", numbered(i)).Epoch
	}
	for _, cursor := range []string{"a:" + ep + ":1", "a::2", "a:zzzz9:3"} {
		pr := poll(t, context.Background(), c, h.URL+"/v1/poll?channel=a&timeout=1s&cursor="+cursor)
		want := msg.Gap{Type: "gap", Channel: "a", Epoch: ep, Next: 6}
		if len(pr.Gaps) != 1 || pr.Gaps[0] != want {
			t.Fatalf("cursor %s: gaps %+v, want %+v", cursor, pr.Gaps, want)
		}
		if got := offsets(pr); len(got) != 5 || got[0] != 6 || got[4] != 10 || pr.Cursor != "a:"+ep+":10" {
			t.Fatalf("cursor %s: messages %v cursor %s", cursor, got, pr.Cursor)
		}
	}
}

func TestPollShutdownAnswersEmpty(t *testing.T) {
	hubtest.CheckLeaks(t)
	h, err := hubtest.StartE(&hubtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop(t)
	c := testClient(t)
	p := publish(t, c, h.URL, "a", `1`)
	done := make(chan msg.PollResponse, 1)
	go func() { done <- poll(t, context.Background(), c, h.URL+"/v1/poll?channel=a&timeout=60s") }()
	waitSubscribers(t, h, "a", 1)
	h.Stop(t)
	pr := <-done
	if len(pr.Messages) != 0 || pr.Cursor != "a:"+p.Epoch+":1" {
		t.Fatalf("shutdown answer %+v", pr)
	}
}

// newBubbleServer builds a hub and server inside a synctest bubble, served
// through ServeHTTP, so fake time drives timeouts and heartbeats exactly.
//
// It stays on memory with DUPLEX_TEST_ENGINE=redis: a synctest bubble's
// fake clock cannot drive a Redis client's sockets and timers, which
// live outside the bubble.
func newBubbleServer(t *testing.T, cfg server.Config) (*hub.Hub, http.Handler) {
	hb, err := hub.New(context.Background(), hub.Config{Engine: memory.New(memory.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Hub = hb
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hb.Shutdown(context.Background()) })
	return hb, srv.Handler()
}

// lockedRecorder is an httptest.ResponseRecorder whose body may be read
// while the handler writes.
type lockedRecorder struct {
	mu sync.Mutex
	*httptest.ResponseRecorder
}

func (r *lockedRecorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ResponseRecorder.Write(b)
}

func (r *lockedRecorder) body() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Body.String()
}

func TestPollTimeoutExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, hd := newBubbleServer(t, server.Config{PollTimeout: 25 * time.Second})
		for _, q := range []string{"", "&timeout=25", "&timeout=25s", "&timeout=0.025e3"} {
			rec := &lockedRecorder{ResponseRecorder: httptest.NewRecorder()}
			done := make(chan struct{})
			start := time.Now()
			go func() {
				hd.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/poll?channel=a"+q, nil))
				close(done)
			}()
			time.Sleep(25*time.Second - time.Nanosecond)
			synctest.Wait()
			select {
			case <-done:
				t.Fatalf("%q: answered before the timeout", q)
			default:
			}
			<-done
			if d := time.Since(start); d != 25*time.Second {
				t.Errorf("%q: answered after %v, want 25s", q, d)
			}
			if rec.Code != 200 || !strings.HasPrefix(rec.body(), `{"messages":[],"gaps":[],"cursor":"a:`) {
				t.Errorf("%q: %d %s", q, rec.Code, rec.body())
			}
		}
	})
}

func TestStreamHeartbeatExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hb, hd := newBubbleServer(t, server.Config{Heartbeat: 15 * time.Second})
		for _, path := range []string{"/v1/stream", "/v1/sse"} {
			rec := &lockedRecorder{ResponseRecorder: httptest.NewRecorder()}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				hd.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", path+"?channel=a", nil))
				close(done)
			}()
			beats := func() int { return strings.Count(rec.body(), "heartbeat") }
			synctest.Wait()
			start := beats() // NDJSON opens with a heartbeat line, SSE with an id
			for i := 1; i <= 3; i++ {
				time.Sleep(15*time.Second - time.Nanosecond)
				synctest.Wait()
				if beats() != start+i-1 {
					t.Fatalf("%s: heartbeat %d early", path, i)
				}
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				if beats() != start+i {
					t.Fatalf("%s: heartbeat %d not sent after 15s of silence: %q", path, i, rec.body())
				}
			}
			// A message resets the silence: the next heartbeat is 15s after it.
			time.Sleep(5 * time.Second)
			if _, err := hb.Publish(context.Background(), "a", []byte(strconv.Itoa(1))); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			time.Sleep(15*time.Second - time.Nanosecond)
			synctest.Wait()
			if beats() != start+3 {
				t.Fatalf("%s: heartbeat despite a message 15s ago", path)
			}
			time.Sleep(time.Nanosecond)
			synctest.Wait()
			if beats() != start+4 {
				t.Fatalf("%s: no heartbeat 15s after the last message", path)
			}
			cancel()
			<-done
		}
	})
}
