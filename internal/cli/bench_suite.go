package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
)

// benchChildEnv marks a process `duplex bench` started as its hub: a test
// binary's TestMain runs the CLI when it is set, as the real binary does
// anyway.
const benchChildEnv = "DUPLEX_BENCH_CHILD"

// Bounds of the default suite's flags, so the load stays reasonable.
const (
	maxSuiteSubscribers = 2000
	maxSuiteRate        = 10000
	maxSuiteRepeat      = 20
)

// runBenchSuite is `duplex bench` without a workload: the default suite.
func runBenchSuite(ctx context.Context, stdio Stdio, args []string) error {
	fs := newFlagSet(stdio, "bench", "[flags]   (or: duplex bench <workload> [flags])")
	var (
		hubURL       = fs.String("url", "", "hub to measure, local or remote (default: start two hubs of this binary on 127.0.0.1, --write-delay 30ms and 0)")
		proxy        = fs.String("proxy", "", "proxy the readers go through (http://, socks5://…); the report then also says which transports it broke or buffered")
		duration     = fs.Duration("duration", 0, "measured time of each delivery round (default 2s; --quick 300ms)")
		subscribers  = fs.Int("subscribers", 0, fmt.Sprintf("readers per delivery measurement (default 50; at most %d)", maxSuiteSubscribers))
		rate         = fs.Float64("rate", 0, fmt.Sprintf("publications per second, and the rate ladder's first rung (default 50; at most %d)", maxSuiteRate))
		size         = fs.Int("size", 0, "bytes of data per publication (default 100; 40 to 65536)")
		repeat       = fs.Int("repeat", 1, fmt.Sprintf("rounds of each delivery measurement, interleaved; the report gives min/median/max (at most %d)", maxSuiteRepeat))
		pollInterval = fs.Duration("poll-interval", 0, "interval T of the plain history pollers (default 250ms)")
		out          = fs.String("out", "", "directory to write report.md, report.json and the charts (.png, .svg) into")
		quick        = fs.Bool("quick", false, "shorten every measurement to a smoke test of seconds (figures mean little)")
		asJSON       = fs.Bool("json", false, "print the report as JSON instead of tables")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	switch {
	case *subscribers < 0 || *subscribers > maxSuiteSubscribers:
		return fmt.Errorf("--subscribers: from 1 to %d", maxSuiteSubscribers)
	case *rate < 0 || *rate > maxSuiteRate:
		return fmt.Errorf("--rate: above 0, at most %d", maxSuiteRate)
	case *size != 0 && (*size < 40 || *size > 64<<10):
		return errors.New("--size: from 40 to 65536")
	case *repeat < 1 || *repeat > maxSuiteRepeat:
		return fmt.Errorf("--repeat: from 1 to %d", maxSuiteRepeat)
	case *duration < 0 || *duration > maxBenchDuration:
		return fmt.Errorf("--duration: up to %s", maxBenchDuration)
	case *pollInterval < 0 || *pollInterval > time.Minute:
		return errors.New("--poll-interval: up to 1m")
	}
	if *proxy != "" {
		if u, err := url.Parse(*proxy); err != nil || u.Host == "" {
			return fmt.Errorf("--proxy %q: want a URL such as http://127.0.0.1:3128", *proxy)
		}
	}
	cfg := bench.SuiteConfig{
		Duration: *duration, Subscribers: *subscribers, Rate: *rate, Size: *size, Repeat: *repeat,
		PollInterval: *pollInterval, Proxy: *proxy, Quick: *quick,
	}

	var hubs []bench.HubInfo
	if *hubURL != "" {
		u, err := url.Parse(*hubURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--url %q: want http://host:port", *hubURL)
		}
		hubs = []bench.HubInfo{{Name: "url", URL: strings.TrimSuffix(*hubURL, "/"), WriteDelayMS: -1}}
	} else {
		for _, h := range []struct {
			name  string
			delay time.Duration
			gogc  string
		}{{"default", 30 * time.Millisecond, ""}, {"write-delay-0", 0, ""}} {
			child, err := startBenchHub(ctx, h.delay, h.gogc)
			if err != nil {
				return fmt.Errorf("start a hub: %w", err)
			}
			defer child.stop()
			hubs = append(hubs, bench.HubInfo{Name: h.name, URL: child.url, PID: child.cmd.Process.Pid, WriteDelayMS: float64(h.delay) / float64(time.Millisecond)})
		}
	}

	if *hubURL == "" {
		cfg.FreshHub = func(ctx context.Context) (bench.HubInfo, func(), error) {
			child, err := startBenchHub(ctx, 30*time.Millisecond, "10")
			if err != nil {
				return bench.HubInfo{}, nil, err
			}
			return bench.HubInfo{Name: bench.IdleMemoryHub, URL: child.url, PID: child.cmd.Process.Pid, WriteDelayMS: 30}, child.stop, nil
		}
	}
	bar := newProgressBar(stdio.Err)
	report, err := bench.RunSuite(ctx, cfg, hubs, bar.update)
	bar.clear()
	if err != nil {
		return err
	}
	if *out != "" {
		if err := writeSuiteOutput(report, *out); err != nil {
			return err
		}
		fmt.Fprintf(stdio.Err, "duplex bench: wrote %s\n", filepath.Join(*out, "report.md"))
	}
	if *asJSON {
		return report.WriteJSON(stdio.Out)
	}
	return report.WriteMarkdown(stdio.Out, nil)
}

// runBenchRender renders report.md and the charts from a report.json: the
// report model is the JSON, and nothing else is needed to draw it.
func runBenchRender(ctx context.Context, stdio Stdio, args []string) error {
	fs := newFlagSet(stdio, "bench render", "[flags]")
	in := fs.String("in", "report.json", "report to render")
	out := fs.String("out", ".", "directory to write report.md, report.json and the charts into")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	var r bench.SuiteReport
	dec := json.NewDecoder(io.LimitReader(f, 64<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	if r.Version != bench.SchemaVersion {
		return fmt.Errorf("%s: schema_version %d, this duplex reads %d", *in, r.Version, bench.SchemaVersion)
	}
	r.DeriveClaims()
	return writeSuiteOutput(&r, *out)
}

// writeSuiteOutput writes report.md, report.json and the charts into dir.
func writeSuiteOutput(r *bench.SuiteReport, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	charts, err := r.WriteCharts(dir)
	if err != nil {
		return err
	}
	write := func(name string, f func(io.Writer) error) error {
		fh, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if err := f(fh); err != nil {
			fh.Close()
			return err
		}
		return fh.Close()
	}
	if err := write("report.json", r.WriteJSON); err != nil {
		return err
	}
	return write("report.md", func(w io.Writer) error { return r.WriteMarkdown(w, charts) })
}

// benchHub is a hub `duplex bench` started: this same binary running
// `serve` as a child process, so that its CPU and memory are its own and
// not mixed with the load generator's (an in-process hub shares both).
type benchHub struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

// startBenchHub starts `serve --listen 127.0.0.1:0 --write-delay delay`
// and waits for its "listening on" line. A non-empty gogc is the hub's
// GOGC (see bench.IdleMemoryHub).
func startBenchHub(ctx context.Context, delay time.Duration, gogc string) (*benchHub, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "serve", "--listen", "127.0.0.1:0", "--write-delay", delay.String(),
		"--engine", "memory", "--log-level", "error")
	// The hub's own environment, minus settings meant for the user's hub.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DUPLEX_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, benchChildEnv+"=1")
	if gogc != "" {
		cmd.Env = append(cmd.Env, "GOGC="+gogc)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &benchHub{cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), "listening on http://"); ok {
				addr, _, _ := strings.Cut(rest, " ")
				select {
				case found <- "http://" + addr:
				default:
				}
			}
		}
		close(found)
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		cmd.Wait()
		close(h.done)
	}()
	select {
	case u, ok := <-found:
		if !ok {
			h.stop()
			return nil, errors.New("the hub exited before listening")
		}
		h.url = u
		return h, nil
	case <-time.After(30 * time.Second):
		h.stop()
		return nil, errors.New("the hub did not listen within 30s")
	case <-ctx.Done():
		h.stop()
		return nil, ctx.Err()
	}
}

// stop interrupts the hub (by its PID) and waits for it, killing it after
// 10s.
func (h *benchHub) stop() {
	h.cmd.Process.Signal(os.Interrupt)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.cmd.Process.Kill()
		<-h.done
	}
}

// progressBar draws the suite's progress on a terminal; on anything else
// it draws nothing.
type progressBar struct {
	w     io.Writer
	on    bool
	start time.Time
}

func newProgressBar(w io.Writer) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, on: ok && isTerminal(f), start: time.Now()}
}

func (b *progressBar) update(done, total int, what string) {
	if !b.on || total == 0 {
		return
	}
	const width = 30
	n := done * width / total
	if len(what) > 44 {
		what = what[:44]
	}
	fmt.Fprintf(b.w, "\r\033[K[%s%s] %3d%% %4.0fs  %s", strings.Repeat("#", n), strings.Repeat(".", width-n), done*100/total, time.Since(b.start).Seconds(), what)
}

func (b *progressBar) clear() {
	if b.on {
		fmt.Fprint(b.w, "\r\033[K")
	}
}
