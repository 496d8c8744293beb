package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// This file holds what every workload shares: the latency histogram, the
// Run and Report types, and their two renderings (a human table and JSON).

// Latency records durations in an HDR histogram: 1 µs to 60 s at three
// significant digits, so p99 and max stay exact enough whatever the spread,
// in constant memory. A Latency is not safe for concurrent use: give each
// worker its own and Merge them at the end.
type Latency struct {
	h *hdrhistogram.Histogram
}

const (
	latencyMin = int64(time.Microsecond)
	latencyMax = int64(60 * time.Second)
)

// NewLatency returns an empty Latency.
func NewLatency() *Latency {
	return &Latency{h: hdrhistogram.New(latencyMin, latencyMax, 3)}
}

// Record adds one duration. Durations outside 1 µs … 60 s are clamped.
func (l *Latency) Record(d time.Duration) {
	v := min(max(int64(d), latencyMin), latencyMax)
	_ = l.h.RecordValue(v) // cannot fail: v is within the range
}

// Merge adds every duration recorded in o.
func (l *Latency) Merge(o *Latency) {
	l.h.Merge(o.h)
}

// Count returns how many durations were recorded.
func (l *Latency) Count() int64 { return l.h.TotalCount() }

// Summary returns the count and the usual quantiles.
func (l *Latency) Summary() LatencySummary {
	if l.h.TotalCount() == 0 {
		return LatencySummary{}
	}
	us := func(v int64) float64 { return round1(float64(v) / 1e3) }
	return LatencySummary{
		Count: l.h.TotalCount(),
		Mean:  round1(l.h.Mean() / 1e3),
		P50:   us(l.h.ValueAtQuantile(50)),
		P90:   us(l.h.ValueAtQuantile(90)),
		P99:   us(l.h.ValueAtQuantile(99)),
		P999:  us(l.h.ValueAtQuantile(99.9)),
		Max:   us(l.h.Max()),
	}
}

func round1(f float64) float64 {
	return float64(int64(f*10+0.5)) / 10
}

// LatencySummary is a latency distribution in microseconds.
type LatencySummary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
}

// Run is the outcome of one workload against one target.
type Run struct {
	// Name names the target ("duplex", "baseline", or a URL).
	Name string `json:"name"`
	// Workload is the workload that ran: "publish", ...
	Workload string `json:"workload"`
	URL      string `json:"url"`
	// Clients is the number of concurrent clients (publishers,
	// connections) the workload ran.
	Clients int `json:"clients"`
	// Client names the load generator's client, for workloads that have a
	// choice (publish: "conn" or "net/http").
	Client string `json:"client,omitempty"`
	// Round numbers the repetitions of a run, from 1, when a report
	// repeats its runs; 0 otherwise.
	Round int `json:"round,omitempty"`
	// Seconds is the measured time, warm-up excluded.
	Seconds float64 `json:"seconds"`
	// Ops counts the operations that succeeded; Errors those that did not.
	Ops    int64 `json:"ops"`
	Errors int64 `json:"errors"`
	// Rate is Ops per second.
	Rate float64 `json:"ops_per_sec"`
	// Latency is the distribution of successful operations' latencies.
	Latency LatencySummary `json:"latency"`
	// TargetCPU is the CPU time the target used per successful operation,
	// in microseconds, from its process_cpu_seconds_total in GET /metrics
	// read before and after the measured time; 0 when it has none. Unlike
	// Rate, it barely moves when other work shares the machine.
	TargetCPU float64 `json:"target_cpu_us_per_op,omitempty"`
	// ClientCPU is the CPU time the load generator used per successful
	// operation, in microseconds.
	ClientCPU float64 `json:"client_cpu_us_per_op,omitempty"`
	// VsBaseline is Rate over the Rate of the baseline run with the same
	// Clients and Round, when the report has one (see Report.Compare).
	VsBaseline float64 `json:"vs_baseline,omitempty"`
	// FirstError describes the first failed operation, if any.
	FirstError string `json:"first_error,omitempty"`
}

// Machine describes where a report was measured.
type Machine struct {
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int64  `json:"memory_mib,omitempty"`
	GoVersion string `json:"go_version"`
}

// ThisMachine describes the machine the process runs on.
func ThisMachine() Machine {
	return Machine{
		OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(),
		MemoryMiB: memTotalMiB(), GoVersion: runtime.Version(),
	}
}

// memTotalMiB reads MemTotal from /proc/meminfo; 0 where there is none.
func memTotalMiB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

// scrapeCPU reads process_cpu_seconds_total from metricsURL, a Prometheus
// text exposition parsed with expfmt; ok is false when there is none.
func scrapeCPU(ctx context.Context, c *http.Client, metricsURL string) (cpu time.Duration, ok bool) {
	m, err := HubMetrics(ctx, c, metricsURL)
	if err != nil {
		return 0, false
	}
	v, ok := m["process_cpu_seconds_total"]
	return time.Duration(v * float64(time.Second)), ok
}

// Report is what one `duplex bench` invocation measured.
type Report struct {
	Workload string    `json:"workload"`
	Started  time.Time `json:"started"`
	Machine  Machine   `json:"machine"`
	// Notes are free-form remarks printed under the table: how load and
	// target share the machine, for example.
	Notes []string `json:"notes,omitempty"`
	Runs  []Run    `json:"runs"`
}

// Compare sets VsBaseline on every run that has a run named baseline with
// the same Clients and Round (the baseline runs themselves get 1).
func (r *Report) Compare(baseline string) {
	type key struct{ clients, round int }
	base := map[key]float64{}
	for _, run := range r.Runs {
		if run.Name == baseline && run.Rate > 0 {
			base[key{run.Clients, run.Round}] = run.Rate
		}
	}
	for i := range r.Runs {
		if b, ok := base[key{r.Runs[i].Clients, r.Runs[i].Round}]; ok {
			r.Runs[i].VsBaseline = float64(int64(r.Runs[i].Rate/b*1000+0.5)) / 1000
		}
	}
}

// WriteJSON writes r as indented JSON and a newline.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r as an aligned table for people, one row per run,
// followed by the notes and the first error of each run that had errors.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "duplex bench %s — %s/%s, %d CPUs, %s\n\n", r.Workload, r.Machine.OS, r.Machine.Arch, r.Machine.CPUs, r.Machine.GoVersion)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tclients\tround\tseconds\tops\terrors\tops/s\tp50\tp90\tp99\tmax\tvs base\tCPU/op\tload CPU/op\t")
	for _, run := range r.Runs {
		vs := "-"
		if run.VsBaseline > 0 {
			vs = fmt.Sprintf("%.0f%%", run.VsBaseline*100)
		}
		l := run.Latency
		round := "-"
		if run.Round > 0 {
			round = strconv.Itoa(run.Round)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			run.Name, run.Clients, round, run.Seconds, run.Ops, run.Errors, run.Rate,
			fmtMicros(l.P50), fmtMicros(l.P90), fmtMicros(l.P99), fmtMicros(l.Max), vs,
			fmtCPU(run.TargetCPU), fmtCPU(run.ClientCPU))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "\nnote: %s", n)
	}
	for _, run := range r.Runs {
		if run.FirstError != "" {
			fmt.Fprintf(w, "\n%s (%d clients): first error: %s", run.Name, run.Clients, run.FirstError)
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}

// fmtCPU renders CPU microseconds per operation, or "-" when unknown.
func fmtCPU(us float64) string {
	if us == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fµs", us)
}

// fmtMicros renders a latency in microseconds with a fitting unit.
func fmtMicros(us float64) string {
	switch {
	case us == 0:
		return "-"
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case us < 1e6:
		return fmt.Sprintf("%.2fms", us/1e3)
	default:
		return fmt.Sprintf("%.2fs", us/1e6)
	}
}
