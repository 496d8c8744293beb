package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/msg"
)

// lossReader is the reader of TestZeroLossAcrossReconnectsAndTransports: it
// keeps its cursor as a client would, and checks every message it
// processes against the one it expects next.
type lossReader struct {
	t    *testing.T
	c    *http.Client
	base string
	seed uint64
	// cursor is the position after the last message processed.
	cursor *bench.Tracker
	next   int // the number ({"n":...}) expected next
	total  int
}

// process checks and takes one message frame; it returns true when all
// messages are in.
func (r *lossReader) process(f bench.Frame) bool {
	r.t.Helper()
	if f.Type == msg.TypeGap {
		r.t.Fatalf("seed %d: gap %+v: messages lost", r.seed, f)
	}
	if f.Type != msg.TypeMessage {
		return false
	}
	var d struct{ N int }
	if err := json.Unmarshal(f.Data, &d); err != nil {
		r.t.Fatalf("seed %d: data %s: %v", r.seed, f.Data, err)
	}
	if d.N != r.next || f.Offset != uint64(r.next) {
		r.t.Fatalf("seed %d: got message %d (offset %d), want %d: a loss or a duplicate", r.seed, d.N, f.Offset, r.next)
	}
	if err := r.cursor.Apply(f); err != nil {
		r.t.Fatalf("seed %d: %v", r.seed, err)
	}
	r.next++
	return r.next > r.total
}

// session reads up to k messages over transport, then disconnects. k < 0
// reads to the end.
func (r *lossReader) session(ctx context.Context, transport string, k int, rng *rand.Rand) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cursor := r.cursor.String()
	done := func() bool { return r.next > r.total || k == 0 }
	switch transport {
	case "sse":
		url := r.base + "/v1/sse?channel=t"
		var hdr []string
		if rng.IntN(2) == 0 {
			hdr = []string{"Last-Event-ID", cursor} // as a browser reconnects
		} else {
			url += "&cursor=" + cursor
		}
		resp := get(r.t, ctx, r.c, url, hdr...)
		wantStreamHeaders(r.t, resp, "text/event-stream")
		defer resp.Body.Close()
		d := bench.NewSSEReader(resp.Body)
		for !done() {
			ev, err := d.Next()
			if err != nil {
				r.t.Fatalf("seed %d: sse: %v", r.seed, err)
			}
			if ev.Comment {
				continue
			}
			f, err := bench.ParseFrame(ev.Data)
			if err != nil || f.Type != ev.Type {
				r.t.Fatalf("seed %d: sse event %s %s: %v", r.seed, ev.Type, ev.Data, err)
			}
			r.process(f)
			k--
			if ev.ID != r.cursor.String() {
				r.t.Fatalf("seed %d: sse id %s, reader's cursor %s", r.seed, ev.ID, r.cursor)
			}
		}
	case "stream":
		resp := get(r.t, ctx, r.c, r.base+"/v1/stream?channel=t&cursor="+cursor)
		wantStreamHeaders(r.t, resp, "application/x-ndjson")
		defer resp.Body.Close()
		d := bench.NewNDJSONReader(resp.Body)
		for !done() {
			f, err := d.Next()
			if err != nil {
				r.t.Fatalf("seed %d: stream: %v", r.seed, err)
			}
			if f.Type == msg.TypeHeartbeat {
				continue
			}
			r.process(f)
			k--
		}
	case "poll":
		if k == 0 {
			// The answer is lost on its way: the cursor does not move.
			poll(r.t, ctx, r.c, r.base+"/v1/poll?channel=t&timeout=0&cursor="+cursor)
			return
		}
		for !done() {
			pr := poll(r.t, ctx, r.c, r.base+"/v1/poll?channel=t&timeout=10s&cursor="+r.cursor.String())
			if r.t.Failed() {
				r.t.FailNow()
			}
			for _, g := range pr.Gaps {
				r.process(bench.Frame{Type: msg.TypeGap, Channel: g.Channel, Epoch: g.Epoch, Next: g.Next})
			}
			for _, m := range pr.Messages {
				if done() {
					break // disconnect in the middle of a batch
				}
				r.process(bench.Frame{Type: m.Type, Channel: m.Channel, Epoch: m.Epoch, Offset: m.Offset, Data: m.Data})
				k--
			}
			if !done() && len(pr.Messages) > 0 && pr.Cursor != r.cursor.String() {
				r.t.Fatalf("seed %d: poll cursor %s, reader's %s", r.seed, pr.Cursor, r.cursor)
			}
		}
	}
}

// TestZeroLossAcrossReconnectsAndTransports: while 10,000 numbered messages
// are published, a reader disconnects at 100 random points, each time
// coming back over a random transport with its cursor; it gets every
// message exactly once, in order. Rerun a failure with DUPLEX_LOSS_SEED.
func TestZeroLossAcrossReconnectsAndTransports(t *testing.T) {
	hubtest.CheckLeaks(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DUPLEX_LOSS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (rerun with DUPLEX_LOSS_SEED=%d)", seed, seed)
	const total, disconnects = 10000, 100
	h := hubtest.Start(t, &hubtest.Options{
		Memory: memory.Config{HistorySize: total},
		Hub:    hub.Config{QueueMessages: 2 * total},
	})
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	pubErr := make(chan error, 1)
	go func() {
		pc := testClient(t)
		for i := 1; i <= total; i++ {
			req, _ := http.NewRequestWithContext(ctx, "POST", h.URL+"/v1/channels/t/messages", strings.NewReader(numbered(i)))
			resp, err := pc.Do(req)
			if err != nil {
				pubErr <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				pubErr <- fmt.Errorf("publish %d: %s", i, resp.Status)
				return
			}
		}
		pubErr <- nil
	}()

	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	tr, _ := bench.NewTracker("t::0") // from the oldest: the publisher may be ahead
	r := &lossReader{t: t, c: c, base: h.URL, seed: seed, cursor: tr, next: 1, total: total}
	transports := []string{"sse", "stream", "poll"}
	used := map[string]int{}
	cuts := 0
	for ; cuts < disconnects && r.next <= total; cuts++ {
		tp := transports[rng.IntN(len(transports))]
		used[tp]++
		// 0 to 99 messages, then a disconnect (0: right after connecting).
		r.session(ctx, tp, rng.IntN(total/disconnects), rng)
	}
	if cuts != disconnects {
		t.Fatalf("seed %d: only %d disconnects before the end", seed, cuts)
	}
	for r.next <= total {
		tp := transports[rng.IntN(len(transports))]
		used[tp]++
		r.session(ctx, tp, -1, rng)
	}
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d: %d messages in order, once each, over %d connections %v", seed, total, used["sse"]+used["stream"]+used["poll"], used)
}
