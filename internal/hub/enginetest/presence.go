package enginetest

import (
	"encoding/json"
	"slices"
	"strconv"
	"testing"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

func presenceOf(t *testing.T, e *instance) hub.PresenceEngine {
	t.Helper()
	p, ok := e.Engine.(hub.PresenceEngine)
	if !ok {
		t.Fatalf("%T does not implement hub.PresenceEngine", e.Engine)
	}
	return p
}

func stats(t *testing.T, p hub.PresenceEngine, ch string) [2]int {
	t.Helper()
	c, u, err := p.PresenceStats(bg, ch)
	if err != nil {
		t.Fatalf("PresenceStats: %v", err)
	}
	return [2]int{c, u}
}

func clients(t *testing.T, p hub.PresenceEngine, ch string) map[string]msg.Member {
	t.Helper()
	ms, err := p.Members(bg, ch)
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	out := map[string]msg.Member{}
	for _, m := range ms {
		out[m.Client] = m
	}
	return out
}

// testPresenceAcrossInstances: a member joined on one instance is seen,
// with its user and info, by another; stats count clients and distinct
// users; joins and leaves reach every subscribed instance, once.
func testPresenceAcrossInstances(t *testing.T, e *env) {
	a, b := e.engine(), e.engine()
	pa, pb := presenceOf(t, a), presenceOf(t, b)
	ch := e.channels(1)[0]
	subscribe(t, a.Engine, ch)
	subscribe(t, b.Engine, ch)
	m1 := msg.Member{Client: "c1", User: "ann", Transport: "ws", Joined: 1000, Info: json.RawMessage(`{"n":1}`)}
	m2 := msg.Member{Client: "c2", User: "ann", Transport: "sse", Joined: 2000}
	m3 := msg.Member{Client: "c3", Transport: "poll", Joined: 3000}
	for _, m := range []msg.Member{m1, m2, m3} {
		if err := pa.Join(bg, ch, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := pa.Join(bg, ch, m1); err != nil { // again: a refresh, no event
		t.Fatal(err)
	}
	got := clients(t, pb, ch)
	if len(got) != 3 || got["c1"].User != "ann" || string(got["c1"].Info) != `{"n":1}` ||
		got["c2"].Transport != "sse" || got["c3"].User != "" || got["c1"].Joined != 1000 || got["c2"].Info != nil {
		t.Fatalf("members seen on b: %+v", got)
	}
	if s := stats(t, pb, ch); s != [2]int{3, 1} {
		t.Fatalf("stats %v, want 3 clients, 1 user", s)
	}
	if err := pb.Leave(bg, ch, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := pb.Leave(bg, ch, "nobody"); err != nil {
		t.Fatal(err)
	}
	for _, in := range []*instance{a, b} {
		in.rec.waitSeq(t, ch, "leave:c1")
		want := []string{"join:c1", "join:c2", "join:c3", "leave:c1"}
		if got := in.rec.sequence(ch); !slices.Equal(got, want) {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	if s := stats(t, pa, ch); s != [2]int{2, 1} {
		t.Fatalf("stats after a leave %v, want 2 clients, 1 user", s)
	}
	pa.Leave(bg, ch, "c2")
	if s := stats(t, pa, ch); s != [2]int{1, 0} {
		t.Fatalf("stats %v, want 1 client, 0 users", s)
	}
}

// testPresenceInOrder: joins and leaves come in order with the channel's
// publications, as they happened on the store.
func testPresenceInOrder(t *testing.T, e *env) {
	a, b := e.engine(), e.engine()
	pb := presenceOf(t, b)
	ch := e.channels(1)[0]
	subscribe(t, a.Engine, ch)
	publish(t, b, ch, `1`)
	if err := pb.Join(bg, ch, msg.Member{Client: "x", Transport: "ws"}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, ch, `2`)
	if err := pb.Leave(bg, ch, "x"); err != nil {
		t.Fatal(err)
	}
	publish(t, b, ch, `3`)
	a.rec.waitOffset(t, ch, 3)
	want := []string{"p1", "join:x", "p2", "leave:x", "p3"}
	if got := a.rec.sequence(ch); !slices.Equal(got, want) {
		t.Fatalf("sequence %v, want %v", got, want)
	}
}

// testPresenceStatsCheap: stats of a channel of many members.
func testPresenceMany(t *testing.T, e *env) {
	a := e.engine()
	p := presenceOf(t, a)
	ch := e.channels(1)[0]
	const n = 500
	for i := range n {
		u := ""
		if i%2 == 0 {
			u = "u" + string(rune('a'+i%10))
		}
		if err := p.Join(bg, ch, msg.Member{Client: "m" + strconv.Itoa(i), User: u}); err != nil {
			t.Fatal(err)
		}
	}
	if s := stats(t, p, ch); s != [2]int{n, 5} {
		t.Fatalf("stats %v, want %d clients, 5 users", s, n)
	}
	if got := clients(t, p, ch); len(got) != n {
		t.Fatalf("%d members, want %d", len(got), n)
	}
}
