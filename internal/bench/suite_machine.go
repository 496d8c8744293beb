package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// This file describes the machine and reads a hub's CPU and memory: from
// /proc/<pid> when the suite knows the hub's process, from its /metrics
// (parsed with expfmt) otherwise.

// DescribeMachine returns what can be known about this machine, the load
// average included (LoadAfter is left for the caller).
func DescribeMachine() MachineInfo {
	m := MachineInfo{
		Cores: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		GoVersion: runtime.Version(), MemoryMiB: memTotalMiB(), LoadBefore: LoadAverage(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if m.CPUModel == "" {
		m.CPUModel = "unknown"
	}
	if m.Kernel == "" {
		m.Kernel = "unknown"
	}
	return m
}

// LoadAverage reads /proc/loadavg; zeros where there is none.
func LoadAverage() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// ProcCPU returns the CPU time process pid has used: the sum over its
// threads of /proc/<pid>/task/*/schedstat (nanoseconds on a CPU), or,
// where that is missing, user plus system time from /proc/<pid>/stat,
// which counts in 10ms ticks and so says little about a short run.
func ProcCPU(pid int) (time.Duration, error) {
	if d, err := schedCPU(pid); err == nil {
		return d, nil
	}
	return statCPU(pid)
}

// schedCPU sums the first field of every thread's schedstat.
func schedCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no schedstat for %d", pid)
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that just ended
		}
		f := strings.Fields(string(b))
		if len(f) < 1 {
			return 0, fmt.Errorf("%s: empty", t)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", t, err)
		}
		sum += ns
	}
	return time.Duration(sum), nil
}

// statCPU reads utime + stime of /proc/<pid>/stat.
func statCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state is field 3, utime 14, stime 15 (1-based).
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// HubMetrics reads the unlabelled gauges and counters of a hub's
// /metrics, parsed with expfmt, keyed by family name.
func HubMetrics(ctx context.Context, c *http.Client, metricsURL string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", metricsURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", metricsURL, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bufio.NewReader(io.LimitReader(resp.Body, 8<<20)))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", metricsURL, err)
	}
	out := make(map[string]float64, len(fams))
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) > 0 {
				continue
			}
			switch {
			case m.GetGauge() != nil:
				out[name] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			case m.GetUntyped() != nil:
				out[name] = m.GetUntyped().GetValue()
			case m.GetSummary() != nil:
				out[name+"_count"] = float64(m.GetSummary().GetSampleCount())
			}
		}
	}
	return out, nil
}

// hubProbe reads one hub's CPU: from /proc when pid is known, else from
// process_cpu_seconds_total of its /metrics.
type hubProbe struct {
	url string
	pid int
	hc  *http.Client
}

func newHubProbe(hub HubInfo) *hubProbe {
	return &hubProbe{url: hub.URL, pid: hub.PID, hc: &http.Client{Timeout: 10 * time.Second}}
}

// cpu returns the hub's CPU time so far; ok is false when it cannot be
// known.
func (p *hubProbe) cpu(ctx context.Context) (time.Duration, bool) {
	if p.pid > 0 {
		d, err := ProcCPU(p.pid)
		return d, err == nil
	}
	m, err := HubMetrics(ctx, p.hc, p.url+"/metrics")
	if err != nil {
		return 0, false
	}
	v, ok := m["process_cpu_seconds_total"]
	return time.Duration(v * float64(time.Second)), ok
}

// memory returns the hub's memory figures from its /metrics.
func (p *hubProbe) memory(ctx context.Context) (HubMemory, error) {
	m, err := HubMetrics(ctx, p.hc, p.url+"/metrics")
	if err != nil {
		return HubMemory{}, err
	}
	return memoryOf(m), nil
}
