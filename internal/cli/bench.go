package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
)

// benchWorkload is one `duplex bench <name>` workload.
type benchWorkload struct {
	name    string
	summary string
	run     func(ctx context.Context, stdio Stdio, args []string) error
	hidden  bool // a helper, not listed in the usage
}

func benchWorkloads() []benchWorkload {
	return []benchWorkload{
		{name: "publish", summary: "HTTP publish throughput and latency: N keep-alive publishers POSTing to a hub", run: runBenchPublish},
		{name: "fanout", summary: "one channel's fan-out over each transport in turn (ws, sse, stream, poll): delivered/s, latency, hub CPU per delivery", run: runBenchFanout},
		{name: "render", summary: "render report.md and the charts again from a report.json", run: runBenchRender, hidden: true},
		{name: "baseline-server", summary: "serve a bare net/http handler answering 201, the floor publish is compared with", run: runBenchBaselineServer, hidden: true},
	}
}

func runBench(ctx context.Context, stdio Stdio, args []string) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		benchUsage(stdio.Out) // asked for: the command's output
		// Then the default suite's own flags, from its flag set.
		return runBenchSuite(ctx, stdio, []string{"-h"})
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		// No workload: the default suite, with its flags.
		return runBenchSuite(ctx, stdio, args)
	}
	for _, w := range benchWorkloads() {
		if w.name == args[0] {
			return w.run(ctx, stdio, args[1:])
		}
	}
	fmt.Fprintf(stdio.Err, "duplex bench: unknown workload %q\n\n", args[0])
	benchUsage(stdio.Err)
	return errUsage
}

func benchUsage(out io.Writer) {
	fmt.Fprintln(out, "usage: duplex bench [flags]             the default suite: every transport, the six claims, charts")
	fmt.Fprintln(out, "       duplex bench <workload> [flags]  one workload")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "The default suite starts two hubs of this binary on 127.0.0.1 (or measures --url),")
	fmt.Fprintln(out, "runs for about a minute and prints the report; --out DIR also writes report.md,")
	fmt.Fprintln(out, "report.json and charts; its flags are listed below.")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "workloads:")
	for _, w := range benchWorkloads() {
		if !w.hidden {
			fmt.Fprintf(out, "  %-10s %s\n", w.name, w.summary)
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Run 'duplex bench <workload> --help' for the flags of one workload.")
	fmt.Fprintln(out)
}

// benchTarget is one --url: a hub (or baseline) to measure, with the name
// the report gives it.
type benchTarget struct {
	name, url string
}

// targetList is the repeatable --url flag: [name=]URL, comma-separated or
// repeated.
type targetList []benchTarget

func (l *targetList) String() string {
	var parts []string
	for _, t := range *l {
		parts = append(parts, t.name+"="+t.url)
	}
	return strings.Join(parts, ",")
}

func (l *targetList) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		t, err := parseBenchTarget(p)
		if err != nil {
			return err
		}
		*l = append(*l, t)
	}
	return nil
}

// parseBenchTarget parses [name=]URL. Without a name, the target is named
// after its URL's host:port.
func parseBenchTarget(s string) (benchTarget, error) {
	name, u, ok := strings.Cut(s, "=")
	if !ok || strings.Contains(name, "/") {
		name, u = "", s
	}
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return benchTarget{}, fmt.Errorf("%q: want [name=]http://host:port", s)
	}
	if name == "" {
		name = strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
		name = strings.TrimSuffix(name, "/")
	}
	return benchTarget{name: name, url: u}, nil
}

// intList is a comma-separated list of positive ints.
type intList []int

func (l *intList) String() string {
	var parts []string
	for _, n := range *l {
		parts = append(parts, strconv.Itoa(n))
	}
	return strings.Join(parts, ",")
}

func (l *intList) Set(v string) error {
	*l = nil
	for p := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return fmt.Errorf("%q is not a positive whole number", p)
		}
		*l = append(*l, n)
	}
	return nil
}

// Bounds on what one bench invocation may ask, so load always stops by
// itself and stays reasonable.
const (
	maxBenchPublishers = 1024
	maxBenchDuration   = 10 * time.Minute
)

func runBenchPublish(ctx context.Context, stdio Stdio, args []string) error {
	fs := newFlagSet(stdio, "bench publish", "[flags]")
	var (
		targets    targetList
		publishers = intList{8}
		duration   = fs.Duration("duration", 10*time.Second, "measured time of each run (at most 10m)")
		warmup     = fs.Duration("warmup", time.Second, "unmeasured time before each run")
		count      = fs.Int64("count", 0, "stop a run after this many measured publishes (0: only --duration bounds it)")
		channel    = fs.String("channel", "bench", "channel to publish to")
		size       = fs.Int("size", 0, "bytes of JSON data per publish (0: a 64-byte object)")
		token      = fs.String("token", envOr("DUPLEX_TOKEN", ""), "access token, sent as Authorization: Bearer (env DUPLEX_TOKEN)")
		timeout    = fs.Duration("timeout", 5*time.Second, "bound on one request")
		client     = fs.String("client", bench.ClientConn, "load generator's HTTP client: conn (lean, one pre-encoded request per connection, http:// only) or net/http (needed for https://)")
		caFile     = fs.String("ca", envOr("DUPLEX_CA", ""), "PEM `file` of the CA to trust for an https:// --url instead of the system's (env DUPLEX_CA)")
		rounds     = fs.Int("rounds", 1, "repeat every run this many times, interleaved (at most 100)")
		baseline   = fs.String("baseline", "baseline", "name of the --url the others are compared with")
		asJSON     = fs.Bool("json", false, "print the report as JSON (docs/bench-report.schema.json, workload publish) instead of a table")
	)
	fs.Var(&targets, "url", "hub to measure, as [name=]URL; repeat (or comma-separate) to measure several in one run, e.g. duplex=http://127.0.0.1:8080,baseline=http://127.0.0.1:8081 (default duplex=http://127.0.0.1:8080)")
	fs.Var(&publishers, "publishers", "concurrent keep-alive publishers; a comma-separated list runs each count in turn, e.g. 8,16,64")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if len(targets) == 0 {
		targets = targetList{{name: "duplex", url: "http://127.0.0.1:8080"}}
	}
	for _, n := range publishers {
		if n > maxBenchPublishers {
			return fmt.Errorf("--publishers %d: at most %d", n, maxBenchPublishers)
		}
	}
	if *duration <= 0 || *duration > maxBenchDuration || *warmup < 0 || *warmup > maxBenchDuration {
		return fmt.Errorf("--duration and --warmup: from 0 to %s (--duration above 0)", maxBenchDuration)
	}
	if *rounds < 1 || *rounds > 100 {
		return errors.New("--rounds: from 1 to 100")
	}
	if *count < 0 || *size < 0 || *size > 1<<20 {
		return errors.New("--count must be ≥ 0 and --size from 0 to 1 MiB")
	}
	var data []byte
	if *size > 0 {
		data = benchData(*size)
	}
	tlsConf, err := trustCA(*caFile)
	if err != nil {
		return err
	}

	started := time.Now()
	report := &bench.Report{Workload: "publish", Started: started.UTC().Truncate(time.Second), Machine: bench.ThisMachine()}
	report.Notes = append(report.Notes, fmt.Sprintf(
		"the load generator ran on %d CPU(s) (GOMAXPROCS %d); a target on the same machine shares them unless pinned apart",
		runtime.NumCPU(), runtime.GOMAXPROCS(0)))
	// Interleave targets at each publisher count, and repeat the whole
	// sequence for --rounds, so a drift of the machine over time (other
	// load, thermal) hits all of them alike.
	for round := range *rounds {
		for _, n := range publishers {
			for _, t := range targets {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintf(stdio.Err, "duplex bench: %s, %d publishers, %s (+%s warm-up)...\n", t.name, n, *duration, *warmup)
				run, err := bench.RunPublish(ctx, bench.PublishConfig{
					URL: t.url, Name: t.name, Channel: *channel, Publishers: n,
					Duration: *duration, Warmup: *warmup, Count: *count, Data: data,
					Token: *token, Timeout: *timeout, Client: *client, TLS: tlsConf,
				})
				if err != nil {
					return err
				}
				if *rounds > 1 {
					run.Round = round + 1
				}
				report.Runs = append(report.Runs, run)
			}
		}
	}
	report.Compare(*baseline)
	// The one report model: the runs become its Publish section, and the
	// JSON and the table both render from it.
	out := bench.NewWorkloadReport("publish", "")
	out.Started = report.Started
	for _, t := range targets {
		out.Hubs = append(out.Hubs, bench.HubInfo{Name: t.name, URL: t.url, WriteDelayMS: -1})
	}
	out.Publish = report.Runs
	out.FinishWorkload(started)
	out.Warnings = append(report.Notes, out.Warnings...)
	if *asJSON {
		return out.WriteJSON(stdio.Out)
	}
	return out.WritePublishText(stdio.Out)
}

// benchData returns a JSON object of exactly size bytes (at least the
// smallest one, {"t":""}).
func benchData(size int) []byte {
	const head, tail = `{"t":"`, `"}`
	n := max(size-len(head)-len(tail), 0)
	return []byte(head + strings.Repeat("x", n) + tail)
}

func runBenchBaselineServer(ctx context.Context, stdio Stdio, args []string) error {
	fs := newFlagSet(stdio, "bench baseline-server", "[flags]")
	listen := fs.String("listen", "127.0.0.1:8081", "loopback address to listen on")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	// Loopback only: check before binding, and what was bound.
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
		return fmt.Errorf("--listen %q: the baseline server listens on a loopback address only", *listen)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		return fmt.Errorf("--listen %s: the baseline server listens on a loopback address only", ln.Addr())
	}
	srv := &http.Server{
		Handler:           bench.BaselineHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	fmt.Fprintf(stdio.Err, "duplex bench baseline-server: listening on http://%s (pid %d)\n", ln.Addr(), os.Getpid())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
