package redis

import (
	"slices"
	"strconv"
	"testing"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hub/enginetest"
	"github.com/duplexhq/duplex/internal/redistest"
)

// TestConformance runs the engine conformance suite on one real
// redis-server: every engine instance of a test is a separate Engine, with
// its own connections, as separate hubs have.
func TestConformance(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, nil)
	runSuite(t, srv.URL(), []*redistest.Server{srv}, nil)
}

// TestConformanceCluster runs it on a real three-master Redis Cluster, on
// channels spread over the three masters' slots.
func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t)
	// Our slot function is Redis's.
	for _, key := range []string{"foo", "bar", "{user1000}.following", "a{}b", "{}{x}", "x:{c7}", "{"} {
		want := c.Nodes[0].MustDo("CLUSTER", "KEYSLOT", key)[0]
		if got := strconv.Itoa(slot(key)); got != want {
			t.Errorf("slot(%q) = %s, Redis says %s", key, got, want)
		}
	}
	runSuite(t, c.URL(), c.Nodes, spreadChannels)
}

func runSuite(t *testing.T, url string, nodes []*redistest.Server, channels func(int) []string) {
	n := 0
	enginetest.Run(t, func(t *testing.T) *enginetest.Store {
		n++
		// The subtests run one after another on the same Redis; a prefix
		// each keeps their keys apart.
		prefix := "t" + strconv.Itoa(n)
		return &enginetest.Store{
			NewEngine: func(t *testing.T, cfg enginetest.Config) hub.Engine {
				e, err := New(Config{URL: url, Prefix: prefix, HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL})
				if err != nil {
					t.Fatal(err)
				}
				return e
			},
			Flush: func(t *testing.T) {
				for _, s := range nodes {
					s.MustDo("FLUSHALL")
				}
			},
			Keys: func(t *testing.T) []string {
				var keys []string
				for _, s := range nodes {
					keys = append(keys, s.MustDo("KEYS", prefix+":*")...)
				}
				slices.Sort(keys)
				return keys
			},
			DropDelivery: func(t *testing.T) {
				killed := 0
				for _, s := range nodes {
					killed += s.KillPubSub()
				}
				if killed == 0 {
					t.Fatal("no pub/sub connection to kill")
				}
			},
			Channels: channels,
		}
	})
}

// spreadChannels returns n channel names whose pub/sub names fall, in
// turn, in each third of the slot space: redis-cli --cluster create gives
// each of three masters one third.
func spreadChannels(n int) []string {
	out := make([]string, 0, n)
	for i := 0; len(out) < n; i++ {
		name := "c" + strconv.Itoa(i)
		third := slot("x:{"+name+"}") * 3 / 16384
		if third == len(out)%3 {
			out = append(out, name)
		}
	}
	return out
}
