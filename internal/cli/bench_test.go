package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// benchMain runs cli.Main in-process and returns the exit code, standard
// output and standard error.
func benchMain(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(ctx, args, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// decodeReport checks that out is a report valid against the schema, the
// one JSON shape of every workload, and decodes it strictly.
func decodeReport(t *testing.T, out string) bench.SuiteReport {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if err := compileReportSchema(t).Validate(inst); err != nil {
		t.Errorf("the report does not validate: %v", err)
	}
	var r bench.SuiteReport
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestParseBenchTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in        string
		name, url string
		bad       bool
	}{
		{in: "http://127.0.0.1:8080", name: "127.0.0.1:8080", url: "http://127.0.0.1:8080"},
		{in: "duplex=http://127.0.0.1:8080/", name: "duplex", url: "http://127.0.0.1:8080/"},
		{in: "http://h:1/?a=b", name: "h:1/?a=b", url: "http://h:1/?a=b"},
		{in: "127.0.0.1:8080", bad: true},
		{in: "x=ftp://h", bad: true},
	} {
		got, err := parseBenchTarget(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseBenchTarget(%q) = %+v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got.name != tc.name || got.url != tc.url {
			t.Errorf("parseBenchTarget(%q) = %+v, %v; want %s=%s", tc.in, got, err, tc.name, tc.url)
		}
	}
}

// TestBenchPublish runs `duplex bench publish --json` against a real hub and
// a baseline server, bounded by --count, and checks the report and that
// the hub really stored the publications.
func TestBenchPublish(t *testing.T) {
	h := hubtest.Start(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // the baseline server takes the port again
	ctx, stop := context.WithCancel(context.Background())
	baseDone := make(chan int)
	go func() {
		code, _, _ := benchMain(t, ctx, "bench", "baseline-server", "--listen", ln.Addr().String())
		baseDone <- code
	}()
	defer func() {
		stop()
		if code := <-baseDone; code != 0 {
			t.Errorf("baseline-server exited %d", code)
		}
	}()
	baseURL := "http://" + ln.Addr().String()

	var (
		code     int
		out, msg string
	)
	for range 100 { // until the baseline server listens
		code, out, msg = benchMain(t, context.Background(), "bench", "publish",
			"--url", "duplex="+h.URL+",baseline="+baseURL, "--publishers", "2,3",
			"--count", "40", "--duration", "30s", "--warmup", "0s", "--channel", "b1", "--json")
		if !strings.Contains(out, "connection refused") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 0 {
		t.Fatalf("bench publish exited %d: %s", code, msg)
	}
	rep := decodeReport(t, out)
	if rep.Workload != "publish" || len(rep.Publish) != 4 {
		t.Fatalf("report: workload %q, %d runs; want publish, 4", rep.Workload, len(rep.Publish))
	}
	for i, want := range []struct {
		name    string
		clients int
	}{{"duplex", 2}, {"baseline", 2}, {"duplex", 3}, {"baseline", 3}} {
		r := rep.Publish[i]
		if r.Name != want.name || r.Clients != want.clients || r.Ops != 40 || r.Errors != 0 || r.VsBaseline <= 0 {
			t.Errorf("run %d = %+v; want %s with %d clients, 40 ops, no errors, compared", i, r, want.name, want.clients)
		}
	}
	info, err := h.Hub.Info(context.Background(), "b1")
	if err != nil || info.Latest != 80 {
		t.Errorf("hub channel b1: latest %d, %v; want 80 publications", info.Latest, err)
	}

	// The table, for people.
	code, out, msg = benchMain(t, context.Background(), "bench", "publish", "--url", h.URL, "--count", "5", "--warmup", "0s")
	if code != 0 || !strings.Contains(out, "ops/s") || !strings.Contains(out, strings.TrimPrefix(h.URL, "http://")) {
		t.Errorf("bench publish (table) exited %d:\n%s\n%s", code, out, msg)
	}
}

func TestBenchUsageAndBadFlags(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if code, msg, _ := benchMain(t, ctx, "bench", "--help"); code != 0 || strings.Contains(msg, "baseline-server") || !strings.Contains(msg, "--quick") || !strings.Contains(msg, "publish") {
		t.Errorf("bench --help: exit %d, usage lists the hidden helper or lacks the suite and workloads: %q", code, msg)
	}
	for _, args := range [][]string{
		{"bench", "nosuch"},
		{"bench", "publish", "--publishers", "0"},
		{"bench", "publish", "--url", "127.0.0.1:8080"},
		{"bench", "publish", "extra"},
		{"bench", "--quick", "extra"},
		{"bench", "--nosuch"},
	} {
		if code, _, _ := benchMain(t, ctx, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	for _, args := range [][]string{
		{"bench", "publish", "--duration", "11m"},
		{"bench", "publish", "--publishers", "5000"},
		{"bench", "publish", "--rounds", "0"},
		{"bench", "baseline-server", "--listen", "0.0.0.0:0"},
		{"bench", "--repeat", "0"},
		{"bench", "--size", "10"},
		{"bench", "--url", "ftp://x"},
		{"bench", "--proxy", "nohost"},
	} {
		if code, _, _ := benchMain(t, ctx, args...); code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
	}
}

// TestBenchFanout runs `duplex bench fanout` over every transport against
// a real hub, small and short, and checks that each delivered everything
// to every reader; then the table, and bad flags.
func TestBenchFanout(t *testing.T) {
	h := hubtest.Start(t, nil)
	code, out, msg := benchMain(t, context.Background(), "bench", "fanout", "--url", h.URL,
		"--subscribers", "3", "--rate", "40", "--duration", "500ms", "--warmup", "100ms", "--json")
	if code != 0 {
		t.Fatalf("bench fanout exited %d: %s", code, msg)
	}
	rep := decodeReport(t, out)
	res := rep.Delivery
	if rep.Workload != "fanout" || len(res) != 4 {
		t.Fatalf("workload %q, %d results, want fanout, 4:\n%s", rep.Workload, len(res), out)
	}
	for i, want := range []string{"ws", "sse", "stream", "poll"} {
		r := res[i]
		if r.Transport != want || r.Subscribers != 3 || r.Published == 0 || r.Delivered != r.Expected || r.Expected != 3*r.Published || r.Latency.Count == 0 {
			t.Errorf("result %d: %+v; want %s, 3 readers, everything delivered", i, r, want)
		}
	}

	code, out, msg = benchMain(t, context.Background(), "bench", "fanout", "--url", h.URL, "--transports", "sse",
		"--subscribers", "2", "--rate", "20", "--duration", "300ms", "--warmup", "0s")
	if code != 0 || !strings.Contains(out, "delivered/s") || !strings.Contains(out, "sse") || strings.Contains(out, "ws ") {
		t.Errorf("bench fanout (table) exited %d:\n%s\n%s", code, out, msg)
	}

	for _, args := range [][]string{
		{"--transports", "carrier-pigeon"},
		{"--transports", ","},
		{"--subscribers", "0"},
		{"--subscribers", "10001"},
		{"--rate", "0"},
		{"--duration", "0s"},
		{"--size", "10"},
	} {
		code, _, msg := benchMain(t, context.Background(), append([]string{"bench", "fanout", "--url", h.URL}, args...)...)
		if code == 0 || msg == "" {
			t.Errorf("bench fanout %v: exit %d, %q; want a refusal", args, code, msg)
		}
	}
}
