package bench

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed (run go test -update if that is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// sampleReport is a fixed report: two targets at two publisher counts, one
// run with errors.
func sampleReport() *Report {
	lat := LatencySummary{Count: 300000, Mean: 260.4, P50: 231, P90: 402.5, P99: 1210, P999: 4020, Max: 12800}
	r := &Report{
		Workload: "publish",
		Started:  time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC),
		Machine:  Machine{OS: "linux", Arch: "amd64", CPUs: 2, MemoryMiB: 24576, GoVersion: "go1.26.8"},
		Notes:    []string{"the load generator ran on 2 CPU(s) (GOMAXPROCS 2); a target on the same machine shares them unless pinned apart"},
		Runs: []Run{
			{Name: "duplex", Workload: "publish", URL: "http://127.0.0.1:8080", Clients: 8, Client: "conn", Seconds: 10.002, Ops: 300000, Rate: 29994, Latency: lat,
				TargetCPU: 31.2, ClientCPU: 28.4},
			{Name: "baseline", Workload: "publish", URL: "http://127.0.0.1:8081", Clients: 8, Seconds: 10.001, Ops: 350000, Rate: 34997, Latency: lat,
				TargetCPU: 24.9, ClientCPU: 27.7},
			{Name: "duplex", Workload: "publish", URL: "http://127.0.0.1:8080", Clients: 64, Seconds: 10.01, Ops: 310000, Errors: 2, Rate: 30969, Latency: lat,
				FirstError: "POST http://127.0.0.1:8080/v1/channels/bench/messages: 503 Service Unavailable"},
			{Name: "baseline", Workload: "publish", URL: "http://127.0.0.1:8081", Clients: 64, Seconds: 10.0, Ops: 0, Rate: 0},
		},
	}
	r.Compare("baseline")
	return r
}

func TestReportJSONGolden(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "publish_report.golden.json", b.Bytes())
}

func TestReportTableGolden(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "publish_report.golden.txt", b.Bytes())
}

func TestCompare(t *testing.T) {
	r := sampleReport()
	for i, want := range []float64{0.857, 1, 0, 0} { // no baseline rate at 64: nothing to compare
		if got := r.Runs[i].VsBaseline; got != want {
			t.Errorf("run %d (%s, %d): VsBaseline = %v, want %v", i, r.Runs[i].Name, r.Runs[i].Clients, got, want)
		}
	}
	// Rounds are compared within themselves.
	r = &Report{Runs: []Run{
		{Name: "duplex", Clients: 8, Round: 1, Rate: 50},
		{Name: "baseline", Clients: 8, Round: 1, Rate: 100},
		{Name: "duplex", Clients: 8, Round: 2, Rate: 50},
		{Name: "baseline", Clients: 8, Round: 2, Rate: 200},
	}}
	r.Compare("baseline")
	if r.Runs[0].VsBaseline != 0.5 || r.Runs[2].VsBaseline != 0.25 {
		t.Errorf("VsBaseline by round = %v, %v; want 0.5, 0.25", r.Runs[0].VsBaseline, r.Runs[2].VsBaseline)
	}
}

func TestLatencySummary(t *testing.T) {
	a, b := NewLatency(), NewLatency()
	if got := a.Summary(); got != (LatencySummary{}) {
		t.Errorf("empty summary = %+v, want zero", got)
	}
	for i := 1; i <= 500; i++ {
		a.Record(time.Duration(i) * time.Microsecond)
		b.Record(time.Duration(500+i) * time.Microsecond)
	}
	b.Record(time.Hour) // clamped to 60s
	a.Merge(b)
	s := a.Summary()
	if s.Count != 1001 {
		t.Errorf("count = %d, want 1001", s.Count)
	}
	// HDR at three significant digits: within 0.1 %.
	near := func(name string, got, want float64) {
		if got < want*0.999 || got > want*1.001 {
			t.Errorf("%s = %vµs, want about %vµs", name, got, want)
		}
	}
	near("p50", s.P50, 501)
	near("p90", s.P90, 901)
	near("p99", s.P99, 991)
	near("max", s.Max, 60e6)
}
