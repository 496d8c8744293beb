package redis

import (
	"context"
	"strconv"
	"testing"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/redistest"
)

// BenchmarkPublish measures publishes through the Lua script on one real
// redis-server, with 1, 8 and 64 × GOMAXPROCS concurrent publishers on
// one channel (b.SetParallelism).
// Run: go test -run XXX -bench Publish ./internal/engine/redis
func BenchmarkPublish(b *testing.B) {
	srv := redistest.Start(b, nil)
	for _, publishers := range []int{1, 8, 64} {
		b.Run(strconv.Itoa(publishers), func(b *testing.B) {
			e, err := New(Config{URL: srv.URL(), PoolSize: publishers})
			if err != nil {
				b.Fatal(err)
			}
			if err := e.Start(context.Background(), hub.Handlers{}); err != nil {
				b.Fatal(err)
			}
			defer e.Close(context.Background())
			data := []byte(`{"text":"hello, world"}`)
			b.SetParallelism(publishers)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.Publish(context.Background(), "bench", data); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
		})
	}
}
