package redis

import (
	"context"
	"strconv"
	"testing"

	"github.com/duplexhq/duplex/internal/redistest"
)

// TestPublishTrimsExpiredPrefix: a publish drops the history entries older
// than the TTL from the stream itself (reads hide them anyway, so only the
// stream's length shows it), also when the expired prefix is longer than
// the script's batch of 64 and when it ends before the stream does. The
// expired entries are written by hand with a time of 1 ms after the Unix
// epoch, the fresh ones with a time far in the future.
func TestPublishTrimsExpiredPrefix(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	e, err := New(Config{URL: srv.URL(), HistorySize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	for _, tc := range []struct {
		name           string
		expired, fresh int
	}{
		{"none", 0, 3}, {"few", 3, 0}, {"over-a-batch", 150, 0}, {"prefix", 70, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := "trim-" + tc.name
			n := tc.expired + tc.fresh
			srv.MustDo("HSET", e.metaKey(ch), "e", "ep", "n", strconv.Itoa(n), "t", "0")
			for i := 1; i <= n; i++ {
				at := "1"
				if i > tc.expired {
					at = "99999999999999"
				}
				srv.MustDo("XADD", e.historyKey(ch), strconv.Itoa(i)+"-0", "t", at, "d", strconv.Itoa(i))
			}
			p, err := e.Publish(context.Background(), ch, []byte(`"new"`))
			if err != nil || p.Offset != uint64(n+1) {
				t.Fatalf("publish: %+v, %v; want offset %d", p, err, n+1)
			}
			if got := srv.MustDo("XLEN", e.historyKey(ch)); len(got) != 1 || got[0] != strconv.Itoa(tc.fresh+1) {
				t.Fatalf("stream length %v after the publish, want %d (the fresh entries and the new one)", got, tc.fresh+1)
			}
			if got := srv.MustDo("XRANGE", e.historyKey(ch), "-", "+", "COUNT", "1"); len(got) == 0 || got[0] != strconv.Itoa(tc.expired+1)+"-0" {
				t.Fatalf("oldest entry %v, want %d-0", got, tc.expired+1)
			}
		})
	}
}
