package redis

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/redistest"
	"github.com/duplexhq/duplex/msg"
)

// commandCalls returns how many times Redis has run cmd since its
// statistics were reset (INFO commandstats).
func commandCalls(t *testing.T, srv *redistest.Server, cmd string) int {
	t.Helper()
	for _, line := range strings.Split(strings.Join(srv.MustDo("INFO", "commandstats"), "\n"), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest[:strings.IndexByte(rest+",", ',')])
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		return n
	}
	return 0
}

// TestLongPollsDoNotChurn: twenty sessions in turn on one channel, each
// subscribing from a cursor and releasing, as twenty long polls do, cost
// Redis one SUBSCRIBE and no UNSUBSCRIBE while the channel lingers; with
// Linger off, one of each per poll.
func TestLongPollsDoNotChurn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		linger       time.Duration
		subs, unsubs int
	}{{"linger", time.Minute, 1, 0}, {"no linger", -1, 20, 20}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, nil)
			e, err := New(Config{URL: srv.URL(), Linger: tc.linger})
			if err != nil {
				t.Fatal(err)
			}
			h, err := hub.New(context.Background(), hub.Config{Engine: e})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Shutdown(context.Background())
			ctx := context.Background()
			srv.MustDo("CONFIG", "RESETSTAT")
			var last uint64
			for poll := 1; poll <= 20; poll++ {
				s, _ := h.NewSession()
				if _, err := s.Subscribe(ctx, "lp", hub.SubscribeOptions{From: &msg.Position{Offset: last}}); err != nil {
					t.Fatal(err)
				}
				p, err := h.Publish(ctx, "lp", []byte(strconv.Itoa(poll)))
				if err != nil {
					t.Fatal(err)
				}
				items, err := s.Next(ctx)
				if err != nil || len(items) != 1 || items[0].Pub == nil || items[0].Pub.Offset != p.Offset {
					t.Fatalf("poll %d: %v %v, want offset %d", poll, items, err, p.Offset)
				}
				last = p.Offset
				s.Release()
			}
			// UNSUBSCRIBE is not waited for. Subscribing a second channel
			// on the same pub/sub connection, and waiting for Redis to
			// confirm it, orders the count after every UNSUBSCRIBE.
			s, _ := h.NewSession()
			defer s.Release()
			if _, err := s.Subscribe(ctx, "fence", hub.SubscribeOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := commandCalls(t, srv, "subscribe") - 1; got != tc.subs {
				t.Errorf("%d SUBSCRIBE for 20 polls, want %d", got, tc.subs)
			}
			if got := commandCalls(t, srv, "unsubscribe"); got != tc.unsubs {
				t.Errorf("%d UNSUBSCRIBE for 20 polls, want %d", got, tc.unsubs)
			}
		})
	}
}

// TestLingerEnds: once Linger has passed with no subscriber, the channel
// leaves Redis's pub/sub, and its messages are never delivered while it
// lingers.
func TestLingerEnds(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	e, err := New(Config{URL: srv.URL(), Linger: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	delivered := make(chan *hub.Publication, 16)
	if err := e.Start(context.Background(), hub.Handlers{Deliver: func(p *hub.Publication) { delivered <- p }}); err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	ctx := context.Background()
	if err := e.Subscribe(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if err := e.Unsubscribe(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Publish(ctx, "l", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	// Subscribe again and publish: only 2 arrives, so 1 was dropped.
	if err := e.Subscribe(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Publish(ctx, "l", []byte(`2`)); err != nil {
		t.Fatal(err)
	}
	if p := <-delivered; p.Offset != 2 {
		t.Fatalf("delivered offset %d while lingering", p.Offset)
	}
	if err := e.Unsubscribe(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	name := e.pubsubName("l")
	deadline := time.Now().Add(10 * time.Second)
	for { // each turn is a Redis round trip, not a sleep
		if r := srv.MustDo("PUBSUB", "NUMSUB", name); len(r) == 2 && r[1] == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the channel never left Redis's pub/sub after its linger")
		}
	}
}
