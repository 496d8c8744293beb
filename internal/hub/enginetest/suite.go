package enginetest

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// Run runs every conformance test against the engines of the stores
// newStore makes, one store per test.
func Run(t *testing.T, newStore func(t *testing.T) *Store) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			tc.run(t, &env{t: t, store: s})
		})
	}
}

// env is one test's store and the engine instances made on it.
type env struct {
	t     *testing.T
	store *Store
	cfg   Config
}

// engine makes and starts one more instance on the store.
func (e *env) engine() *instance {
	e.t.Helper()
	return start(e.t, e.store.NewEngine(e.t, e.cfg))
}

func (e *env) channels(n int) []string {
	if e.store.Channels != nil {
		return e.store.Channels(n)
	}
	out := make([]string, n)
	for i := range out {
		out[i] = "ch" + strconv.Itoa(i)
	}
	return out
}

var cases = []struct {
	name string
	run  func(t *testing.T, e *env)
}{
	{"OffsetsWithoutHolesAcrossInstances", testOffsetsWithoutHoles},
	{"EpochStableWhileStoreHoldsChannel", testEpochStable},
	{"EpochNewWhenStoreLostChannel", testEpochNewAfterFlush},
	{"TrimBySize", testTrimBySize},
	{"NoHistory", testNoHistory},
	{"TrimByTTL", testTrimByTTL},
	{"SubscribeThenHistorySeam", testSeam},
	{"CountedSubscribe", testCountedSubscribe},
	{"DeliveryToEveryInstanceInOrder", testDeliveryInOrder},
	{"NeverPublishedLeavesNoState", testNeverPublished},
	{"LostDelivery", testLostDelivery},
	{"HubFillsLostDelivery", testHubFillsLostDelivery},
	{"CanceledContext", testCanceledContext},
	{"PresenceAcrossInstances", testPresenceAcrossInstances},
	{"PresenceInOrderWithPublications", testPresenceInOrder},
	{"PresenceManyMembers", testPresenceMany},
}

var bg = context.Background()

func publish(t *testing.T, e hub.Engine, channel string, data string) *hub.Publication {
	t.Helper()
	p, err := e.Publish(bg, channel, []byte(data))
	if err != nil {
		t.Fatalf("Publish %s: %v", channel, err)
	}
	return p
}

func history(t *testing.T, e hub.Engine, channel string, q hub.HistoryQuery) (hub.StreamState, []*hub.Publication) {
	t.Helper()
	st, pubs, err := e.History(bg, channel, q)
	if err != nil {
		t.Fatalf("History %s: %v", channel, err)
	}
	return st, pubs
}

func subscribe(t *testing.T, e hub.Engine, channel string) {
	t.Helper()
	if err := e.Subscribe(bg, channel); err != nil {
		t.Fatalf("Subscribe %s: %v", channel, err)
	}
}

func unsubscribe(t *testing.T, e hub.Engine, channel string) {
	t.Helper()
	if err := e.Unsubscribe(bg, channel); err != nil {
		t.Fatalf("Unsubscribe %s: %v", channel, err)
	}
}

// wantOffsets fails t unless pubs hold exactly first..last, in order, each
// with its envelope encoded.
func wantOffsets(t *testing.T, pubs []*hub.Publication, first, last uint64) {
	t.Helper()
	if want := int(last - first + 1); first > last && len(pubs) == 0 {
		return
	} else if len(pubs) != want {
		t.Fatalf("%d publications, want %d..%d", len(pubs), first, last)
	}
	for i, p := range pubs {
		if p.Offset != first+uint64(i) {
			t.Fatalf("publication %d has offset %d, want %d", i, p.Offset, first+uint64(i))
		}
		want := hub.NewPublication(p.Channel, p.Epoch, p.Offset, p.Time, p.Data)
		if string(p.JSON) != string(want.JSON) {
			t.Fatalf("JSON %s, want %s", p.JSON, want.JSON)
		}
	}
}

func testOffsetsWithoutHoles(t *testing.T, e *env) {
	e.cfg = Config{HistorySize: 10000}
	a, b := e.engine(), e.engine()
	const publishers, each = 8, 60
	ch := e.channels(1)[0]
	var (
		mu   sync.Mutex
		offs []uint64
		eps  = map[string]bool{}
		wg   sync.WaitGroup
	)
	for i := range publishers {
		eng := a.Engine
		if i%2 == 1 {
			eng = b.Engine
		}
		wg.Go(func() {
			for j := range each {
				p, err := eng.Publish(bg, ch, []byte(strconv.Itoa(i*1000+j)))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				offs = append(offs, p.Offset)
				eps[p.Epoch] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(offs)
	for i, o := range offs {
		if o != uint64(i+1) {
			t.Fatalf("offsets handed out: %v… — want 1..%d, each once", offs[:min(len(offs), i+3)], publishers*each)
		}
	}
	if len(eps) != 1 {
		t.Fatalf("epochs %v, want one", eps)
	}
	for _, inst := range []*instance{a, b} {
		st, pubs := history(t, inst, ch, hub.HistoryQuery{Limit: -1})
		if st.Latest != publishers*each || st.Oldest != 1 || !eps[st.Epoch] {
			t.Fatalf("state %+v", st)
		}
		wantOffsets(t, pubs, 1, publishers*each)
	}
}

func testEpochStable(t *testing.T, e *env) {
	a, b := e.engine(), e.engine()
	ch := e.channels(1)[0]
	p1 := publish(t, a, ch, `"a"`)
	if !msg.ValidEpoch(p1.Epoch) || p1.Offset != 1 {
		t.Fatalf("first publication: epoch %q offset %d", p1.Epoch, p1.Offset)
	}
	p2 := publish(t, b, ch, `"b"`)
	stA, _ := history(t, a, ch, hub.HistoryQuery{})
	stB, _ := history(t, b, ch, hub.HistoryQuery{})
	if p2.Epoch != p1.Epoch || stA.Epoch != p1.Epoch || stB.Epoch != p1.Epoch || p2.Offset != 2 {
		t.Fatalf("epochs %q %q %q %q, offset %d", p1.Epoch, p2.Epoch, stA.Epoch, stB.Epoch, p2.Offset)
	}
	// A new instance on the same store (a hub restarted) sees the same.
	c := e.engine()
	if st, _ := history(t, c, ch, hub.HistoryQuery{}); st.Epoch != p1.Epoch || st.Latest != 2 {
		t.Fatalf("new instance sees %+v", st)
	}
	// Another channel has an epoch of its own making; offsets are per channel.
	other := e.channels(2)[1]
	if p := publish(t, c, other, `1`); p.Offset != 1 || !msg.ValidEpoch(p.Epoch) {
		t.Fatalf("other channel: %+v", p.Envelope)
	}
}

func testEpochNewAfterFlush(t *testing.T, e *env) {
	a := e.engine()
	ch := e.channels(1)[0]
	subscribe(t, a, ch)
	for range 3 {
		publish(t, a, ch, `1`)
	}
	before, _ := history(t, a, ch, hub.HistoryQuery{})
	e.store.Flush(t)
	st, pubs := history(t, a, ch, hub.HistoryQuery{Limit: -1})
	if st.Latest != 0 || st.Oldest != 1 || len(pubs) != 0 || st.Epoch == before.Epoch {
		t.Fatalf("after the store lost the channel: %+v, %d publications (before: %+v)", st, len(pubs), before)
	}
	p := publish(t, a, ch, `2`)
	if p.Offset != 1 || p.Epoch == before.Epoch || !msg.ValidEpoch(p.Epoch) {
		t.Fatalf("first publication after the loss: epoch %q offset %d, old epoch %q", p.Epoch, p.Offset, before.Epoch)
	}
	if st.Epoch != "" && st.Epoch != p.Epoch {
		t.Fatalf("History said epoch %q, the publication got %q", st.Epoch, p.Epoch)
	}
	// Delivery goes on for the subscribed channel, in the new epoch.
	a.rec.wait(t, "the first publication of the new epoch", func() bool {
		pubs := a.rec.pubs[ch]
		return len(pubs) > 0 && pubs[len(pubs)-1].Epoch == p.Epoch
	})
}

func testTrimBySize(t *testing.T, e *env) {
	e.cfg = Config{HistorySize: 5}
	a, b := e.engine(), e.engine()
	ch := e.channels(1)[0]
	for i := range 12 {
		publish(t, []*instance{a, b}[i%2], ch, strconv.Itoa(i))
	}
	st, pubs := history(t, b, ch, hub.HistoryQuery{Limit: -1})
	if st.Oldest != 8 || st.Latest != 12 {
		t.Fatalf("state %+v", st)
	}
	wantOffsets(t, pubs, 8, 12)
	if string(pubs[0].Data) != "7" || pubs[0].Epoch != st.Epoch || pubs[0].Channel != ch {
		t.Fatalf("offset 8: %+v", pubs[0].Envelope)
	}
	for _, q := range []struct {
		after       uint64
		limit       int
		first, last uint64
	}{{0, 2, 8, 9}, {9, -1, 10, 12}, {12, -1, 1, 0}, {50, -1, 1, 0}, {10, 0, 1, 0}, {11, 10, 12, 12}, {3, 1, 8, 8}} {
		got, pubs := history(t, a, ch, hub.HistoryQuery{After: q.after, Limit: q.limit})
		if got != st {
			t.Fatalf("after %d limit %d: state %+v, want %+v", q.after, q.limit, got, st)
		}
		wantOffsets(t, pubs, q.first, q.last)
	}
}

func testNoHistory(t *testing.T, e *env) {
	e.cfg = Config{HistorySize: -1}
	a := e.engine()
	ch := e.channels(1)[0]
	for range 3 {
		publish(t, a, ch, `1`)
	}
	st, pubs := history(t, a, ch, hub.HistoryQuery{Limit: -1})
	if st.Oldest != 4 || st.Latest != 3 || len(pubs) != 0 || !msg.ValidEpoch(st.Epoch) {
		t.Fatalf("%+v, %d publications", st, len(pubs))
	}
}

// testTrimByTTL runs on the store's own clock (Redis has its own), so it
// waits for expiry, polling: the wait is the scenario, not a stand-in for
// synchronisation.
func testTrimByTTL(t *testing.T, e *env) {
	e.cfg = Config{HistoryTTL: 300 * time.Millisecond}
	a := e.engine()
	ch := e.channels(1)[0]
	for range 3 {
		publish(t, a, ch, `1`)
	}
	first, _ := history(t, a, ch, hub.HistoryQuery{})
	expired := func() hub.StreamState {
		t.Helper()
		deadline := time.Now().Add(waitLimit)
		for {
			st, pubs := history(t, a, ch, hub.HistoryQuery{Limit: -1})
			if len(pubs) == 0 {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("history still holds %d publications after %v", len(pubs), waitLimit)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	st := expired()
	if st.Latest != 3 || st.Oldest != 4 || st.Epoch != first.Epoch {
		t.Fatalf("after the TTL: %+v, want latest 3, oldest 4, epoch %q", st, first.Epoch)
	}
	// Offsets go on, and what is published now is retained alone.
	p := publish(t, a, ch, `2`)
	st, pubs := history(t, a, ch, hub.HistoryQuery{Limit: -1})
	if p.Offset != 4 || p.Epoch != first.Epoch {
		t.Fatalf("publication after the TTL: %+v", p.Envelope)
	}
	if len(pubs) > 0 {
		wantOffsets(t, pubs, 4, 4)
		if st.Oldest != 4 {
			t.Fatalf("state %+v with offset 4 retained", st)
		}
	}
	if st = expired(); st.Oldest != 5 || st.Latest != 4 {
		t.Fatalf("after the second TTL: %+v", st)
	}
}

// testSeam: a publication racing a Subscribe is either in the History read
// after Subscribe returns, or delivered — never neither. Publishers run on
// another instance, so the race crosses the store as it does between hubs.
func testSeam(t *testing.T, e *env) {
	e.cfg = Config{HistorySize: 100000}
	a, b := e.engine(), e.engine()
	chans := e.channels(4)
	for round, ch := range chans {
		stop := make(chan struct{})
		var last uint64
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p, err := b.Publish(bg, ch, []byte(strconv.Itoa(i)))
				if err != nil {
					t.Error(err)
					return
				}
				last = p.Offset
				if i > 5000 {
					return
				}
			}
		})
		// Let the publisher get going in some rounds, not in others.
		if round%2 == 1 {
			for {
				if st, _ := history(t, a, ch, hub.HistoryQuery{}); st.Latest >= 20 {
					break
				}
			}
		}
		subscribe(t, a, ch)
		st, pubs := history(t, a, ch, hub.HistoryQuery{Limit: -1})
		wantOffsets(t, pubs, 1, st.Latest)
		close(stop)
		wg.Wait()
		if t.Failed() {
			return
		}
		if last > st.Latest {
			a.rec.waitOffset(t, ch, last)
		}
		got := a.rec.offsets(ch)
		for o := st.Latest + 1; o <= last; o++ {
			if !slices.Contains(got, o) {
				t.Fatalf("round %d: offset %d is neither in the history read after Subscribe (latest %d) nor delivered", round, o, st.Latest)
			}
		}
		unsubscribe(t, a, ch)
	}
}

func testCountedSubscribe(t *testing.T, e *env) {
	a := e.engine()
	ch := e.channels(1)[0]
	subscribe(t, a, ch)
	subscribe(t, a, ch)
	p1 := publish(t, a, ch, `1`)
	a.rec.waitOffset(t, ch, p1.Offset)
	unsubscribe(t, a, ch) // one left
	p2 := publish(t, a, ch, `2`)
	a.rec.waitOffset(t, ch, p2.Offset)
	unsubscribe(t, a, ch) // none left
	p3 := publish(t, a, ch, `3`)
	subscribe(t, a, ch)
	p4 := publish(t, a, ch, `4`)
	a.rec.waitOffset(t, ch, p4.Offset)
	// Delivery is in offset order, so p3 would have come before p4.
	if got := a.rec.offsets(ch); slices.Contains(got, p3.Offset) {
		t.Fatalf("offset %d delivered while unsubscribed: %v", p3.Offset, got)
	}
	if got := a.rec.offsets(ch); !slices.Equal(got, []uint64{1, 2, 4}) {
		t.Fatalf("delivered %v, want [1 2 4]", got)
	}
	// An Unsubscribe too many is not an error and does not go negative.
	unsubscribe(t, a, ch)
	unsubscribe(t, a, ch)
	subscribe(t, a, ch)
	p5 := publish(t, a, ch, `5`)
	a.rec.waitOffset(t, ch, p5.Offset)
}

func testDeliveryInOrder(t *testing.T, e *env) {
	a, b, quiet := e.engine(), e.engine(), e.engine()
	chans := e.channels(3)
	for _, ch := range chans {
		subscribe(t, a, ch)
		subscribe(t, b, ch)
	}
	const each = 100
	var wg sync.WaitGroup
	for i, ch := range chans {
		for _, inst := range []*instance{a, b} {
			wg.Go(func() {
				for j := range each {
					if _, err := inst.Publish(bg, ch, []byte(strconv.Itoa(i*each+j))); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	for _, inst := range []*instance{a, b} {
		for _, ch := range chans {
			inst.rec.waitOffset(t, ch, 2*each)
			got := inst.rec.offsets(ch)
			for i, o := range got {
				if o != uint64(i+1) {
					t.Fatalf("%s delivered %v…, want 1..%d in order, once each", ch, got[:i+1], 2*each)
				}
			}
			if len(got) != 2*each {
				t.Fatalf("%s delivered %d, want %d", ch, len(got), 2*each)
			}
		}
	}
	if quiet.rec.total != 0 {
		t.Fatalf("an instance that subscribed to nothing got %d publications", quiet.rec.total)
	}
}

func testNeverPublished(t *testing.T, e *env) {
	a := e.engine()
	ch := e.channels(1)[0]
	var before []string
	if e.store.Keys != nil {
		before = e.store.Keys(t)
	}
	st, pubs := history(t, a, ch, hub.HistoryQuery{Limit: -1})
	if st.Latest != 0 || st.Oldest != 1 || len(pubs) != 0 || (st.Epoch != "" && !msg.ValidEpoch(st.Epoch)) {
		t.Fatalf("never published: %+v, %d publications", st, len(pubs))
	}
	history(t, a, ch, hub.HistoryQuery{After: 7, Limit: 10})
	subscribe(t, a, ch)
	unsubscribe(t, a, ch)
	if e.store.Keys != nil {
		if after := e.store.Keys(t); !slices.Equal(before, after) {
			t.Fatalf("reading a channel never published changed the store's keys: %v, then %v", before, after)
		}
	}
	p := publish(t, a, ch, `1`)
	if p.Offset != 1 || !msg.ValidEpoch(p.Epoch) || (st.Epoch != "" && p.Epoch != st.Epoch) {
		t.Fatalf("first publication %+v after reading state %+v", p.Envelope, st)
	}
}

func testLostDelivery(t *testing.T, e *env) {
	a, b := e.engine(), e.engine()
	chans := e.channels(3)
	for _, ch := range chans {
		subscribe(t, a, ch)
		publish(t, b, ch, `1`)
		a.rec.waitOffset(t, ch, 1)
	}
	if e.store.DropDelivery == nil {
		// Nothing can interrupt this engine's delivery: it must never say
		// it lost some.
		if n := a.rec.lostCount() + b.rec.lostCount(); n != 0 {
			t.Fatalf("Lost called %d times by an engine that cannot lose deliveries", n)
		}
		return
	}
	e.store.DropDelivery(t)
	a.rec.wait(t, "Lost for every subscribed channel", func() bool {
		for _, ch := range chans {
			if a.rec.lost[ch] == 0 {
				return false
			}
		}
		return true
	})
	// Lost comes once delivery is back: what is published now arrives.
	for _, ch := range chans {
		p := publish(t, b, ch, `2`)
		a.rec.waitOffset(t, ch, p.Offset)
	}
	if n := b.rec.lostCount(); n != 0 {
		t.Fatalf("an instance with no subscription was told of %d losses", n)
	}
}

func testCanceledContext(t *testing.T, e *env) {
	a := e.engine()
	ch := e.channels(1)[0]
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := a.Publish(ctx, ch, []byte(`1`)); err == nil {
		t.Fatal("Publish with a canceled context succeeded")
	}
	if _, _, err := a.History(ctx, ch, hub.HistoryQuery{}); err == nil {
		t.Fatal("History with a canceled context succeeded")
	}
	if p := publish(t, a, ch, `2`); p.Offset != 1 {
		t.Fatalf("a canceled Publish took offset %d", p.Offset-1)
	}
}
