package bench

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkPollLoad: 1,000 long-pollers on one channel at rising publish
// rates, against a hub process of its own. Run with
//
//	go test -run '^$' -bench 'BenchmarkPollLoad' -benchtime 1x -timeout 30m ./internal/bench
func BenchmarkPollLoad(b *testing.B) {
	url := startHubProcess(b)
	for _, rate := range []float64{1, 10, 50, 100, 200} {
		b.Run(fmt.Sprintf("pollers=1000/rate=%g", rate), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res, err := RunPollLoad(ctx, PollLoadConfig{
				URL: url, Channel: fmt.Sprintf("poll%g", rate), Pollers: 1000, Rate: rate,
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.DeliveredRate, "deliveries/s")
			b.ReportMetric(res.RequestRate, "requests/s")
			b.ReportMetric(res.MessagesPerAnswer, "msgs/answer")
			b.ReportMetric(res.Latency.P50/1000, "p50-ms")
			b.ReportMetric(res.Latency.P99/1000, "p99-ms")
			b.ReportMetric(res.HubCPUPerMillion, "hub-cpu-s/1M")
			b.Logf("%+v", res)
			if res.Delivered < res.Expected {
				b.Errorf("delivered %d of %d", res.Delivered, res.Expected)
			}
		})
	}
}
