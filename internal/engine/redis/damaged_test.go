package redis

import (
	"context"
	"testing"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// TestDamagedHistoryEntrySkipped: an entry that something other than the
// hub wrote into a channel's history — invalid UTF-8, a lone surrogate, a
// line break — is never handed to a transport: History leaves it out, and
// a reader resuming across it gets a gap notice for the hole instead of a
// frame that would fail its WebSocket with 1007.
func TestDamagedHistoryEntrySkipped(t *testing.T) {
	t.Parallel()
	srv, _, h := startHub(t, Config{})
	ctx := context.Background()
	if _, err := h.Publish(ctx, "dmg", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	for i, bad := range []string{"\"\xff\xfe\"", `"\ud800"`, "[1,\n2]"} {
		srv.MustDo("XADD", "duplex:{dmg}:h", string(rune('2'+i))+"-0", "t", "1", "d", bad)
	}
	srv.MustDo("HSET", "duplex:{dmg}:m", "n", "4")
	p5, err := h.Publish(ctx, "dmg", []byte(`5`))
	if err != nil || p5.Offset != 5 {
		t.Fatalf("publish after the damage: %+v, %v", p5, err)
	}
	_, pubs, err := h.History(ctx, "dmg", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var offs []uint64
	for _, p := range pubs {
		offs = append(offs, p.Offset)
	}
	if len(offs) != 2 || offs[0] != 1 || offs[1] != 5 {
		t.Fatalf("history offsets %v, want [1 5]", offs)
	}
	s, _ := h.NewSession()
	defer s.Release()
	if _, err := s.Subscribe(ctx, "dmg", hub.SubscribeOptions{From: &msg.Position{Offset: 1}}); err != nil {
		t.Fatal(err)
	}
	items, err := s.Next(ctx)
	if err != nil || len(items) != 2 || items[0].Gap == nil || items[0].Gap.Next != 5 || items[1].Pub == nil || items[1].Pub.Offset != 5 {
		t.Fatalf("resume after offset 1: %+v, %v; want a gap to 5, then 5", items, err)
	}
}
