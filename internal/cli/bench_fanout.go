package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
)

// Bounds of `duplex bench fanout`, so the load stays reasonable and stops
// by itself (descriptors are capped at 20,000 a process on these machines).
const (
	maxFanoutReaders = 10000
	maxFanoutRate    = 100000
)

var fanoutTransports = []string{"ws", "sse", "stream", "poll"}

// runBenchFanout measures one fan-out workload over each transport in
// turn against one hub: the same readers, rate and message size, each
// publication POSTed, so the transports differ in nothing else.
func runBenchFanout(ctx context.Context, stdio Stdio, args []string) error {
	fs := newFlagSet(stdio, "bench fanout", "[flags]")
	var (
		url        = fs.String("url", "http://127.0.0.1:8080", "hub to measure")
		transports = fs.String("transports", strings.Join(fanoutTransports, ","), "comma-separated transports to compare, in order: ws, sse, stream (NDJSON), poll")
		readers    = fs.Int("subscribers", 100, fmt.Sprintf("readers on the channel, per transport (at most %d)", maxFanoutReaders))
		rate       = fs.Float64("rate", 100, fmt.Sprintf("publications per second (at most %d)", maxFanoutRate))
		duration   = fs.Duration("duration", 10*time.Second, "measured time per transport (at most 10m)")
		warmup     = fs.Duration("warmup", 2*time.Second, "unmeasured time before each measurement")
		size       = fs.Int("size", 100, "bytes of data per publication (40 to 65536)")
		asJSON     = fs.Bool("json", false, "print the report as JSON (docs/bench-report.schema.json, workload fanout) instead of a table")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	var list []string
	for t := range strings.SplitSeq(*transports, ",") {
		t = strings.TrimSpace(t)
		switch t {
		case "ws", "sse", "stream", "poll":
			list = append(list, t)
		case "":
		default:
			return fmt.Errorf("--transports: unknown transport %q (ws, sse, stream, poll)", t)
		}
	}
	switch {
	case len(list) == 0:
		return errors.New("--transports: name at least one of ws, sse, stream, poll")
	case *readers < 1 || *readers > maxFanoutReaders:
		return fmt.Errorf("--subscribers: from 1 to %d", maxFanoutReaders)
	case !(*rate > 0 && *rate <= maxFanoutRate):
		return fmt.Errorf("--rate: above 0, at most %d", maxFanoutRate)
	case *duration <= 0 || *duration > maxBenchDuration || *warmup < 0 || *warmup > maxBenchDuration:
		return fmt.Errorf("--duration and --warmup: from 0 to %s (--duration above 0)", maxBenchDuration)
	case *size < 40 || *size > 64<<10:
		return errors.New("--size: from 40 to 65536")
	}
	started := time.Now()
	stamp := started.UnixNano()
	report := bench.NewWorkloadReport("fanout", *url)
	var err error
	for _, t := range list {
		fmt.Fprintf(stdio.Err, "duplex bench: %s, %d readers, %g msg/s, %s (+%s warm-up)...\n", t, *readers, *rate, *duration, *warmup)
		// A fresh channel per transport and run: no history to replay.
		channel := fmt.Sprintf("fanout_%s_%d", t, stamp)
		cfg := bench.FanoutConfig{URL: *url, Transport: t, Channel: channel, Subscribers: *readers, Rate: *rate,
			Duration: *duration, Warmup: *warmup, Size: *size, PublishHTTP: true}
		var res bench.FanoutResult
		switch t {
		case "ws":
			res, err = bench.RunWSFanout(ctx, cfg)
		case "sse", "stream":
			res, err = bench.RunStreamFanout(ctx, cfg)
		case "poll":
			var p bench.PollLoadResult
			p, err = bench.RunPollLoad(ctx, bench.PollLoadConfig{URL: *url, Channel: channel, Pollers: *readers, Rate: *rate,
				Duration: *duration, Warmup: *warmup, Size: *size})
			res = bench.FanoutResult{Transport: "poll", Subscribers: p.Pollers, Rate: p.Rate, Seconds: p.Seconds,
				Published: p.Published, Delivered: p.Delivered, Expected: p.Expected, DeliveredRate: p.DeliveredRate,
				Latency: p.Latency, HubCPU: p.HubCPU, HubCPUPerMillion: p.HubCPUPerMillion}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		res.Transport = t
		report.AddFanout(res)
	}
	report.FinishWorkload(started)
	if *asJSON {
		err = report.WriteJSON(stdio.Out)
	} else {
		err = report.WriteDeliveryText(stdio.Out)
	}
	if err != nil {
		return err
	}
	for _, d := range report.Delivery {
		if d.Delivered < d.Expected {
			return fmt.Errorf("%s delivered %d of %d messages", d.Transport, d.Delivered, d.Expected)
		}
	}
	return nil
}
