package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestHubMetrics parses a known exposition: unlabelled gauges and
// counters are read, labelled samples skipped, a broken page refused.
func TestHubMetrics(t *testing.T) {
	page := "# HELP process_cpu_seconds_total CPU.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n" +
		"# TYPE go_goroutines gauge\ngo_goroutines 42\n" +
		"# TYPE duplex_sessions gauge\nduplex_sessions{transport=\"ws\"} 7\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bad" {
			io.WriteString(w, "process_cpu_seconds_total twelve\n")
			return
		}
		io.WriteString(w, page)
	}))
	defer srv.Close()
	m, err := HubMetrics(context.Background(), srv.Client(), srv.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if m["process_cpu_seconds_total"] != 12.5 || m["go_goroutines"] != 42 {
		t.Errorf("got %v", m)
	}
	if _, ok := m["duplex_sessions"]; ok {
		t.Errorf("a labelled sample was read as unlabelled: %v", m)
	}
	if _, err := HubMetrics(context.Background(), srv.Client(), srv.URL+"/bad"); err == nil {
		t.Error("a broken exposition parsed")
	}
}

// TestProcCPUOfThisProcess reads this process's CPU from /proc both ways;
// they agree to the 10ms ticks of stat.
func TestProcCPUOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Log("no /proc: ProcCPU must fail")
		if _, err := ProcCPU(os.Getpid()); err == nil {
			t.Error("ProcCPU without /proc succeeded")
		}
		return
	}
	for i := 0; i < 3e7; i++ { // some CPU to measure
		_ = strconv.Itoa(i)
	}
	sched, err1 := schedCPU(os.Getpid())
	stat, err2 := statCPU(os.Getpid())
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if sched <= 0 || stat <= 0 {
		t.Fatalf("schedstat %v, stat %v", sched, stat)
	}
	// Threads that exited are in stat but not in the tasks' schedstat.
	if d := sched - stat; d > stat/2+50e6 || -d > stat/2+50e6 {
		t.Errorf("schedstat %v and stat %v disagree", sched, stat)
	}
}

// FuzzStampOfData: any payload is parsed without panicking, and a stamp
// found is the value of the digits after {"t": (leading zeros allowed).
func FuzzStampOfData(f *testing.F) {
	for _, s := range []string{`{"t":1764770000000000000,"p":"xx"}`, `{"t":`, `{"t":-1}`, `{"x":1}`, `{"t":99999999999999999999}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, ok := stampOfData(json.RawMessage(b))
		if !ok {
			return
		}
		rest := b[len(`{"t":`):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if string(b[:5]) != `{"t":` || v < 0 || j == 0 || strconv.FormatInt(v, 10) != strings.TrimLeft(string(rest[:j]), "0") && v != 0 {
			t.Fatalf("stamp %d from %q", v, b)
		}
	})
}
