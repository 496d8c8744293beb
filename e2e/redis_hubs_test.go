package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/redistest"
)

// Many `duplex serve` processes on one Redis (or one Redis Cluster): the
// hubs are child processes of the test, started on ports of 127.0.0.1
// their kernel chose; the readers are raw SSE, NDJSON, long-poll and
// WebSocket followers and the Go client over each transport
// (followers_test.go).

// TestRedisThreeHubsEveryTransport: three hub processes on one Redis.
// Publications made on each hub, over HTTP and over WebSocket, reach
// followers on all three over every transport, raw and through the Go
// client, in offset order and each once; followers that leave their hub
// every 7 messages and resume on the next one with their cursor lose
// nothing either.
func TestRedisThreeHubsEveryTransport(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	hubs := startHubProcs(t, 3, srv.URL())
	urls := hubURLs(hubs)
	channels := []string{"three-a", "three-b"}
	fs := followEverywhere(t, urls, []int{0, 1, 2}, channels, 0)
	movers := followEverywhere(t, urls, []int{0}, channels, 7)
	all := append(slices.Clone(fs), movers...)

	// Each hub publishes half of its share over HTTP and half over its
	// own WebSocket (the Go client's ws transport publishes there).
	wsPub := make([]*client.Client, len(hubs))
	for i, h := range hubs {
		wsPub[i] = dialClient(t, h.URL, fastOpts(client.WebSocket))
	}
	ack := newAcked()
	const perHubPerChannel = 20
	publishRound := func(from, to int) {
		var wg sync.WaitGroup
		errs := make(chan error, len(hubs))
		for i, h := range hubs {
			wg.Go(func() {
				for n := from; n < to; n++ {
					for _, ch := range channels {
						data := fmt.Sprintf(`{"hub":%d,"n":%d}`, i, n)
						if n%2 == 0 {
							status, s, err := post(h.URL, ch, data)
							if err != nil {
								errs <- err
								return
							}
							ack.add(s, status)
							continue
						}
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						p, err := wsPub[i].Publish(ctx, ch, json.RawMessage(data))
						cancel()
						if err != nil {
							errs <- fmt.Errorf("WebSocket publish on %s: %w", h.Name, err)
							return
						}
						ack.add(seen{Channel: ch, Epoch: p.Epoch, Offset: p.Offset, Data: data}, 201)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	// The first half may be read partly from history (followers still
	// connecting); once every follower has it, the second half is live.
	publishRound(0, perHubPerChannel/2)
	for _, f := range all {
		for i := range hubs {
			f.waitFor(t, 30*time.Second, "at the first half", hasMessage(channels[1], fmt.Sprintf(`{"hub":%d,"n":%d}`, i, perHubPerChannel/2-1)))
		}
	}
	publishRound(perHubPerChannel/2, perHubPerChannel)
	fence(t, urls[1], channels, all, 30*time.Second)

	want := map[string][]seen{}
	for _, ch := range channels {
		want[ch] = history(t, urls[2], ch)
		if n := len(want[ch]); n != len(hubs)*perHubPerChannel+1 {
			t.Fatalf("history of %s holds %d publications, want %d", ch, n, len(hubs)*perHubPerChannel+1)
		}
		checkHistory(t, ch, want[ch], ack.all())
	}
	checkFollowers(t, all, want)
	// The movers did move: they read from every hub.
	for _, f := range movers {
		ev, _, _ := f.snapshot()
		from := map[int]bool{}
		for _, e := range ev {
			from[e.Hub] = true
		}
		if len(from) != len(hubs) {
			t.Errorf("%s read from hubs %v only", f.Name(), from)
		}
	}
}

// TestRedisConcurrentPublishersThreeHubs: publishers on three hub
// processes, four each, publish to one channel at once. The offsets
// acknowledged are exactly 1…N, each once, in one epoch, and followers on
// each hub read exactly that sequence.
func TestRedisConcurrentPublishersThreeHubs(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	hubs := startHubProcs(t, 3, srv.URL())
	urls := hubURLs(hubs)
	const ch = "contended"
	var fs []follower
	for i := range hubs {
		fs = append(fs, followRaw(t, "ws", urls, i, []string{ch}, 0), followRaw(t, "sse", urls, i, []string{ch}, 0))
	}
	const perPublisher, publishersPerHub = 40, 4
	ack := newAcked()
	var wg sync.WaitGroup
	errs := make(chan error, len(hubs)*publishersPerHub)
	for i, h := range hubs {
		for p := range publishersPerHub {
			wg.Go(func() {
				for n := range perPublisher {
					status, s, err := post(h.URL, ch, fmt.Sprintf(`{"hub":%d,"p":%d,"n":%d}`, i, p, n))
					if err != nil {
						errs <- err
						return
					}
					ack.add(s, status)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := ack.all()
	total := len(hubs) * publishersPerHub * perPublisher
	if len(got) != total {
		t.Fatalf("%d publications acknowledged, want %d (%s)", len(got), total, ack.statusesString())
	}
	slices.SortFunc(got, func(a, b seen) int { return int(a.Offset) - int(b.Offset) })
	for i, s := range got {
		if s.Offset != uint64(i+1) || s.Epoch != got[0].Epoch {
			t.Fatalf("acknowledged offsets: #%d is %s, want offset %d of epoch %s (no hole, no repeat)", i, s, i+1, got[0].Epoch)
		}
	}
	fence(t, urls[0], []string{ch}, fs, 30*time.Second)
	hist := history(t, urls[1], ch)
	if len(hist) != total+1 {
		t.Fatalf("history holds %d, want %d", len(hist), total+1)
	}
	checkHistory(t, ch, hist, got)
	checkFollowers(t, fs, map[string][]seen{ch: hist})
}

// TestRedisClusterThroughHubs: three hub processes on a real three-master
// Redis Cluster. Channels chosen so that every master owns two of them
// are published on through every hub and read on every hub over every
// transport; each channel's keys live on the master that owns its slot,
// and its fan-out is sharded pub/sub on that master (PUBSUB SHARDCHANNELS),
// not classic pub/sub.
func TestRedisClusterThroughHubs(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	// owner[i]: the channels node i owns. A node that does not own a slot
	// answers MOVED; "{ch}" hashes like the engine's keys of ch.
	owner := make([][]string, len(cl.Nodes))
	var channels []string
	for i := 0; len(channels) < 2*len(cl.Nodes) && i < 1000; i++ {
		ch := fmt.Sprintf("slot-%d", i)
		for n, node := range cl.Nodes {
			if _, err := node.Do("GET", "{"+ch+"}"); err == nil && len(owner[n]) < 2 {
				owner[n] = append(owner[n], ch)
				channels = append(channels, ch)
			} else if err != nil && !strings.HasPrefix(err.Error(), "MOVED") {
				t.Fatalf("GET on %s: %v", node.Addr, err)
			}
		}
	}
	if len(channels) != 2*len(cl.Nodes) {
		t.Fatalf("channels by node: %v", owner)
	}
	hubs := startHubProcs(t, 3, cl.URL())
	urls := hubURLs(hubs)
	fs := followEverywhere(t, urls, []int{0, 1, 2}, channels, 0)
	ack := newAcked()
	const perChannel = 9
	for n := range perChannel {
		for _, ch := range channels {
			mustPost(t, ack, urls[n%len(urls)], ch, fmt.Sprintf(`{"n":%d}`, n))
		}
	}
	fence(t, urls[2], channels, fs, 30*time.Second)
	want := map[string][]seen{}
	for i, ch := range channels {
		want[ch] = history(t, urls[i%len(urls)], ch)
		if len(want[ch]) != perChannel+1 {
			t.Fatalf("history of %s holds %d, want %d", ch, len(want[ch]), perChannel+1)
		}
		checkHistory(t, ch, want[ch], ack.all())
	}
	checkFollowers(t, fs, want)
	for n, node := range cl.Nodes {
		keys := strings.Join(node.Keys(), " ")
		shard := node.MustDo("PUBSUB", "SHARDCHANNELS")
		classic := node.MustDo("PUBSUB", "CHANNELS")
		for _, ch := range owner[n] {
			if !strings.Contains(keys, "{"+ch+"}") {
				t.Errorf("node %s owns %s but holds none of its keys: %s", node.Addr, ch, keys)
			}
			if !slices.ContainsFunc(shard, func(s string) bool { return strings.Contains(s, "{"+ch+"}") }) {
				t.Errorf("node %s: no sharded subscription for %s: %v", node.Addr, ch, shard)
			}
		}
		if len(classic) != 0 {
			t.Errorf("node %s has classic pub/sub channels %v: a Cluster broadcasts those to every node", node.Addr, classic)
		}
	}
}
