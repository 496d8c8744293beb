package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// This file puts the single workloads (`duplex bench publish`, `bench
// fanout`) into the one report model: their results become sections of a
// SuiteReport, whose JSON is the same schema as the suite's and whose
// tables render from it.

// NewWorkloadReport returns an empty report of one workload ("publish" or
// "fanout") against hubURL, started now.
func NewWorkloadReport(workload, hubURL string) *SuiteReport {
	r := &SuiteReport{
		Schema: SchemaID, Version: SchemaVersion, Workload: workload,
		Started: time.Now().UTC().Truncate(time.Second), Machine: DescribeMachine(),
	}
	if hubURL != "" {
		r.Hubs = []HubInfo{{Name: "url", URL: hubURL, WriteDelayMS: -1}}
	}
	return r
}

// AddFanout adds one fan-out result as a Delivery row. Its hub CPU in
// seconds per million deliveries is milliseconds per thousand.
func (r *SuiteReport) AddFanout(res FanoutResult) {
	d := Delivery{
		Transport: res.Transport, Variant: res.Transport, Hub: "url", KeepAlive: true,
		Subscribers: res.Subscribers, Rate: res.Rate, Rounds: 1, Seconds: res.Seconds,
		Published: res.Published, Delivered: res.Delivered, Expected: res.Expected,
		Latency: res.Latency, P50US: Stats{res.Latency.P50, res.Latency.P50, res.Latency.P50},
		P99US: Stats{res.Latency.P99, res.Latency.P99, res.Latency.P99}, CDF: []CDFPoint{},
		HubCPUMSPer1000: round1(res.HubCPUPerMillion),
	}
	if res.Closed > 0 {
		d.Error = fmt.Sprintf("%d readers' connections ended during the run", res.Closed)
	}
	r.Delivery = append(r.Delivery, d)
}

// FinishWorkload closes a workload report: the load average after, the
// wall time since started, and empty lists rather than null.
func (r *SuiteReport) FinishWorkload(started time.Time) {
	r.Machine.LoadAfter = LoadAverage()
	r.WallSeconds = round1(time.Since(started).Seconds())
	r.finish()
}

// WriteDeliveryText writes the Delivery rows as an aligned table for a
// terminal, a row each.
func (r *SuiteReport) WriteDeliveryText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\treaders\tmsg/s\tdelivered/s\tdelivered\tp50\tp99\tmax\thub CPU ms/1000\t")
	for _, d := range r.Delivery {
		rate := 0.0
		if d.Seconds > 0 {
			rate = float64(d.Delivered) / d.Seconds
		}
		fmt.Fprintf(tw, "%s\t%d\t%g\t%.0f\t%d/%d\t%s\t%s\t%s\t%s\t\n", d.Variant, d.Subscribers, d.Rate, rate,
			d.Delivered, d.Expected, fmtMicros(d.Latency.P50), fmtMicros(d.Latency.P99), fmtMicros(d.Latency.Max), fmtOr(d.HubCPUMSPer1000, "%.2f"))
	}
	return tw.Flush()
}

// WritePublishText writes the Publish runs as the publish table, with the
// warnings as notes.
func (r *SuiteReport) WritePublishText(w io.Writer) error {
	old := Report{
		Workload: "publish", Started: r.Started, Notes: r.Warnings, Runs: r.Publish,
		Machine: Machine{OS: r.Machine.OS, Arch: r.Machine.Arch, CPUs: r.Machine.Cores, MemoryMiB: r.Machine.MemoryMiB, GoVersion: r.Machine.GoVersion},
	}
	return old.WriteTable(w)
}
