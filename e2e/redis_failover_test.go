package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/redistest"
	"github.com/duplexhq/duplex/msg"
)

// Failures under `duplex serve` child processes on one Redis: a hub
// killed with SIGKILL, Redis restarted with and without persistence,
// Redis stopped for 5 s under publish load, the pub/sub connections cut.
// Followers are those of followers_test.go: they resume on the next hub
// with their cursors, and in the end each must hold exactly the channel's
// history.

// loadPublisher publishes to channels on hubs, round-robin, one
// publication every pace, until stop is called or it has made max
// attempts. Every answer is counted; only 201 and 503 are expected.
type loadPublisher struct {
	ack      *acked
	attempts atomic.Int64
	stopc    chan struct{}
	done     chan struct{}
	unwanted atomic.Value // first answer that was neither 201 nor 503
}

func startLoad(t *testing.T, hubs []string, channels []string, pace time.Duration, max int) *loadPublisher {
	p := &loadPublisher{ack: newAcked(), stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(pace) // pacing the load, not synchronising
		defer tick.Stop()
		for n := range max {
			select {
			case <-p.stopc:
				return
			case <-tick.C:
			}
			ch := channels[n%len(channels)]
			status, s, err := post(hubs[(n/len(channels))%len(hubs)], ch, fmt.Sprintf(`{"n":%d}`, n))
			p.attempts.Add(1)
			p.ack.add(s, status)
			if status != http.StatusCreated && status != http.StatusServiceUnavailable {
				p.unwanted.CompareAndSwap(nil, fmt.Sprintf("status %d: %v", status, err))
			}
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *loadPublisher) stop() {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	<-p.done
}

// check fails the test on any answer other than 201 and 503.
func (p *loadPublisher) check(t *testing.T) {
	t.Helper()
	if u := p.unwanted.Load(); u != nil {
		t.Fatalf("a publish was answered %v (answers: %s)", u, p.ack.statusesString())
	}
}

// TestRedisHubKill9: followers of every transport, raw and Go client, read
// from hub0 while messages are published on hub1 and hub2. hub0 is killed
// with SIGKILL mid-stream: each follower reconnects to another hub with
// its cursor (the Go clients through a dialer that, like a TCP load
// balancer, takes the next hub that accepts) and loses nothing, sees
// nothing twice. Followers on hub1 are the control.
func TestRedisHubKill9(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	hubs := startHubProcs(t, 3, srv.URL())
	urls := hubURLs(hubs)
	channels := []string{"k9-a", "k9-b"}
	onHub0 := followEverywhere(t, urls, []int{0}, channels, 0)
	control := followEverywhere(t, urls, []int{1}, channels, 0)
	all := append(slices.Clone(onHub0), control...)
	ack := newAcked()
	for n := range 10 {
		for _, ch := range channels {
			mustPost(t, ack, urls[1+n%2], ch, fmt.Sprintf(`{"n":%d}`, n))
		}
	}
	for _, f := range all {
		f.waitFor(t, 30*time.Second, "at the first ten", hasMessage(channels[1], `{"n":9}`))
	}
	// Mid-stream: publishing goes on while hub0 dies.
	load := startLoad(t, urls[1:], channels, 2*time.Millisecond, 200)
	waitUntil(t, 15*time.Second, "40 publications into the load", func() bool { return load.ack.count(201) >= 40 })
	hubs[0].Kill9()
	<-load.done
	load.check(t)
	if load.ack.count(201) != 200 {
		t.Fatalf("publishing on the surviving hubs: %s", load.ack.statusesString())
	}
	fence(t, urls[2], channels, all, 30*time.Second)
	want := map[string][]seen{}
	acks := append(ack.all(), load.ack.all()...)
	for _, ch := range channels {
		want[ch] = history(t, urls[1], ch)
		if len(want[ch]) != 10+100+1 {
			t.Fatalf("history of %s holds %d, want %d", ch, len(want[ch]), 10+100+1)
		}
		checkHistory(t, ch, want[ch], acks)
	}
	checkFollowers(t, all, want)
	for _, f := range onHub0 {
		// (A Go client's long polls reconnect without a new OnConnect:
		// the hub an event came from tells that it moved.)
		ev, _, _ := f.snapshot()
		if last := ev[len(ev)-1]; last.Hub == 0 {
			t.Errorf("%s: the fence came from the killed hub0: %s", f.Name(), last)
		}
	}
}

// TestRedisRestartWithoutPersistence: Redis, which keeps nothing, is
// restarted under two running hubs. The channel comes back with a new
// epoch; every follower, on either hub and any transport, gets the five
// messages of the old epoch, one gap notice for the new epoch whose next
// is 1, then the new messages, each once. The hubs neither crash nor need
// a restart.
func TestRedisRestartWithoutPersistence(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	hubs := startHubProcs(t, 2, srv.URL())
	urls := hubURLs(hubs)
	const ch = "nopersist"
	fs := followEverywhere(t, urls, []int{0, 1}, []string{ch}, 0)
	var want []seen
	for n := range 5 {
		want = append(want, mustPost(t, nil, urls[n%2], ch, fmt.Sprintf(`{"n":%d}`, n)))
	}
	for _, f := range fs {
		f.waitFor(t, 30*time.Second, "at the old epoch's end", hasMessage(ch, `{"n":4}`))
	}
	old := want[0].Epoch
	srv.Restart(false)
	var after []seen
	for n := 5; n < 10; n++ {
		after = append(after, postUntilAccepted(t, nil, urls[n%2], ch, fmt.Sprintf(`{"n":%d}`, n), 20*time.Second))
	}
	if after[0].Epoch == old || after[0].Offset != 1 {
		t.Fatalf("first publication after Redis lost everything: %s, want offset 1 of an epoch other than %s", after[0], old)
	}
	fence(t, urls[0], []string{ch}, fs, 30*time.Second)
	hist := history(t, urls[1], ch)
	checkHistory(t, ch, hist, after)
	if len(hist) != 6 || hist[0].Epoch != after[0].Epoch {
		t.Fatalf("history after the restart: %v", hist)
	}
	want = append(want, seen{Gap: true, Channel: ch, Epoch: after[0].Epoch, Offset: 1})
	want = append(want, hist...)
	checkFollowers(t, fs, map[string][]seen{ch: want})
	eachHubHealthy(t, hubs)
}

// TestRedisRestartWithAOF: Redis with the append-only file is restarted
// under two running hubs. History and offsets survive: the channel keeps
// its epoch, the next offset follows the last, and no follower sees a gap.
func TestRedisRestartWithAOF(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, &redistest.Options{AOF: true})
	hubs := startHubProcs(t, 2, srv.URL())
	urls := hubURLs(hubs)
	const ch = "aof"
	fs := followEverywhere(t, urls, []int{0, 1}, []string{ch}, 0)
	var acks []seen
	for n := range 5 {
		acks = append(acks, mustPost(t, nil, urls[n%2], ch, fmt.Sprintf(`{"n":%d}`, n)))
	}
	for _, f := range fs {
		f.waitFor(t, 30*time.Second, "at the fifth message", hasMessage(ch, `{"n":4}`))
	}
	srv.Restart(true)
	for n := 5; n < 10; n++ {
		acks = append(acks, postUntilAccepted(t, nil, urls[n%2], ch, fmt.Sprintf(`{"n":%d}`, n), 20*time.Second))
	}
	if acks[5].Epoch != acks[0].Epoch || acks[5].Offset != 6 {
		t.Fatalf("first publication after the AOF restart: %s, want offset 6 of epoch %s", acks[5], acks[0].Epoch)
	}
	fence(t, urls[1], []string{ch}, fs, 30*time.Second)
	hist := history(t, urls[0], ch)
	if len(hist) != 11 {
		t.Fatalf("history after the AOF restart holds %d, want 11", len(hist))
	}
	checkHistory(t, ch, hist, acks)
	checkFollowers(t, fs, map[string][]seen{ch: hist})
	eachHubHealthy(t, hubs)
}

// TestRedisStoppedUnderLoad: Redis (AOF, appendfsync always: what it
// acknowledged is on disk) is stopped for 5 s while publishers post to
// three hubs. While it is down publishes are answered 503 (a WebSocket
// publish or history: an unavailable error reply) and /healthz says 503;
// nothing else is answered. Afterwards every acknowledged (201)
// publication is in the history, whose offsets have no hole, and every
// follower — every transport, raw and Go client, on every hub — resumed
// by itself and holds exactly that history: every acknowledged offset,
// once, in order, no gap.
func TestRedisStoppedUnderLoad(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, &redistest.Options{AOF: true})
	hubs := startHubProcs(t, 3, srv.URL(), "--engine-timeout", "500ms")
	urls := hubURLs(hubs)
	channels := []string{"down-a", "down-b"}
	fs := followEverywhere(t, urls, []int{0, 1, 2}, channels, 0)
	wsPub := dialClient(t, urls[2], fastOpts(client.WebSocket))
	load := startLoad(t, urls, channels, 10*time.Millisecond, 1500)
	waitUntil(t, 15*time.Second, "30 publications acknowledged", func() bool { return load.ack.count(201) >= 30 })
	back := srv.StopFor(5 * time.Second)
	// A WebSocket publish is answered with an unavailable error reply,
	// and its connection stays usable.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := wsPub.Publish(ctx, channels[0], json.RawMessage(`{"ws":"while down"}`))
	cancel()
	if msg.CodeOf(err) != msg.CodeUnavailable {
		t.Errorf("WebSocket publish while Redis is down: %v, want an unavailable error reply", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	_, err = wsPub.History(ctx, channels[0], 0, 1)
	cancel()
	if msg.CodeOf(err) != msg.CodeUnavailable {
		t.Errorf("WebSocket history while Redis is down: %v, want an unavailable error reply", err)
	}
	// While it is down some hub's /healthz must say so (polled until
	// Redis is back; a miss is reported, and the rest still checked).
	healthDown := false
	for polling := true; polling && !healthDown; {
		select {
		case <-back:
			polling = false
		default:
		}
		for _, h := range hubs {
			if code, err := h.Health(); err == nil && code == http.StatusServiceUnavailable {
				healthDown = true
			}
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not standing in for it
	}
	if !healthDown {
		t.Errorf("no hub's /healthz said 503 during the 5 s Redis was down")
	}
	<-back
	unavailable := load.ack.count(503)
	if unavailable == 0 {
		t.Fatalf("no publish was answered 503 while Redis was down (answers: %s)", load.ack.statusesString())
	}
	okBefore := load.ack.count(201)
	waitUntil(t, 20*time.Second, "30 more publications acknowledged after Redis came back", func() bool { return load.ack.count(201) >= okBefore+30 })
	load.stop()
	load.check(t)
	fence(t, urls[0], channels, fs, 60*time.Second)
	want := map[string][]seen{}
	for _, ch := range channels {
		want[ch] = history(t, urls[1], ch)
		checkHistory(t, ch, want[ch], load.ack.all())
	}
	checkFollowers(t, fs, want)
	eachHubHealthy(t, hubs)
	t.Logf("answers: %s", load.ack.statusesString())
}

// TestRedisPubSubKilled: while messages flow through three hubs, Redis
// closes every pub/sub connection (CLIENT KILL TYPE pubsub), three times.
// Each hub's engine reconnects and the hub fills what it may have missed
// from history: every follower ends with every message, once, in order,
// and no gap (a false gap would be a loss reported where there is none).
func TestRedisPubSubKilled(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	hubs := startHubProcs(t, 3, srv.URL())
	urls := hubURLs(hubs)
	channels := []string{"cut-a", "cut-b"}
	fs := followEverywhere(t, urls, []int{0, 1, 2}, channels, 0)
	waitUntil(t, 15*time.Second, "three pub/sub connections", func() bool { return pubsubClients(t, srv.Do) >= 3 })
	load := startLoad(t, urls, channels, 2*time.Millisecond, 600)
	for round := range 3 {
		waitUntil(t, 15*time.Second, "the load under way", func() bool { return load.ack.count(201) >= (round+1)*100 })
		n := srv.KillPubSub()
		if n < len(hubs) {
			t.Fatalf("round %d: CLIENT KILL TYPE pubsub closed %d connections, want at least %d (one a hub)", round, n, len(hubs))
		}
		waitUntil(t, 15*time.Second, "every hub subscribed again", func() bool { return pubsubClients(t, srv.Do) >= len(hubs) })
	}
	<-load.done
	load.check(t)
	if load.ack.count(201) != 600 {
		t.Fatalf("publishing: %s", load.ack.statusesString())
	}
	fence(t, urls[0], channels, fs, 30*time.Second)
	want := map[string][]seen{}
	for _, ch := range channels {
		want[ch] = history(t, urls[1], ch)
		if len(want[ch]) != 300+1 {
			t.Fatalf("history of %s holds %d, want 301", ch, len(want[ch]))
		}
		checkHistory(t, ch, want[ch], load.ack.all())
	}
	checkFollowers(t, fs, want)
	eachHubHealthy(t, hubs)
}
