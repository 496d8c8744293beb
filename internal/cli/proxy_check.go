package cli

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/duplexhq/duplex/internal/proxy/check"
	"github.com/duplexhq/duplex/internal/proxy/check/judge"
)

// runProxyCheck is `duplex proxy check`: probe proxies with every
// protocol and hub transport against a judge, and say what each carries.
func runProxyCheck(ctx context.Context, stdio Stdio, args []string) error {
	fs := newFlagSet(stdio, "proxy check", "[flags] FILE|-|PROXY... (PROXY: host:port, every protocol, or scheme://[user:pass@]host:port)")
	judgeURL := fs.String("judge", envOr("DUPLEX_JUDGE", ""), "base `URL` of a duplex hub the proxies can reach, e.g. http://host:8080 (env DUPLEX_JUDGE); empty: an in-process hub on 127.0.0.1, for proxies on this machine only")
	judgeUDP := fs.String("judge-udp", "", "`ip:port` of a UDP echo for the SOCKS5 UDP probe with --judge (empty: UDP not probed; the in-process judge has its own)")
	concurrency := fs.Int("concurrency", 16, "proxies checked at once")
	timeout := fs.Duration("timeout", 10*time.Second, "time allowed for each step of a probe")
	poll := fs.Duration("poll", 30*time.Second, "long-poll wait, and how long a stream is held silent")
	need := fs.String("need", check.TransportHTTP, "exit 0 only if some proxy carries every one of these `transports` ("+strings.Join(check.Transports, ",")+")")
	asJSON := fs.Bool("json", false, "print one JSON object a proxy, one a line")
	asCSV := fs.Bool("csv", false, "print CSV, one row a proxy")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	usageErr := func(format string, a ...any) error {
		fmt.Fprintf(stdio.Err, "duplex proxy check: "+format+"\n", a...)
		return errUsage
	}
	if *asJSON && *asCSV {
		return usageErr("--json and --csv exclude each other")
	}
	if *concurrency < 1 {
		return usageErr("--concurrency must be at least 1")
	}
	if *timeout <= 0 || *poll <= 0 {
		return usageErr("--timeout and --poll must be positive")
	}
	needs, err := parseNeed(*need)
	if err != nil {
		return usageErr("--need: %v", err)
	}
	if fs.NArg() == 0 {
		return usageErr("no proxies given (a file, - for standard input, or host:port)")
	}
	targets, bad, err := readTargets(stdio, fs.Args())
	if err != nil {
		return usageErr("%v", err)
	}
	for _, b := range bad {
		fmt.Fprintf(stdio.Err, "duplex proxy check: skipped %s\n", b)
	}
	if len(targets) == 0 {
		return usageErr("no proxies to check")
	}

	cfg := check.Config{Timeout: *timeout, Poll: *poll, UDPEcho: *judgeUDP}
	if *judgeURL == "" {
		j, err := judge.Start(ctx, judge.Config{})
		if err != nil {
			return fmt.Errorf("start the in-process judge: %w", err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			j.Close(sctx)
		}()
		cfg.Judge, cfg.UDPEcho = j.URL, j.UDPEcho
		fmt.Fprintf(stdio.Err, "duplex proxy check: judge: an in-process hub on %s — it only suits proxies on this machine; use --judge for remote ones\n", j.URL)
	} else {
		u, err := url.Parse(*judgeURL)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			return usageErr("--judge %q: want the http:// base URL of a duplex hub", *judgeURL)
		}
		u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/v1/echo")
		cfg.Judge = u
	}

	results := checkAll(ctx, cfg, targets, *concurrency, newProgressBar(stdio.Err))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	switch {
	case *asJSON:
		enc := json.NewEncoder(stdio.Out)
		for _, r := range results {
			enc.Encode(r)
		}
	case *asCSV:
		writeCheckCSV(stdio.Out, results)
	default:
		writeCheckTable(stdio.Out, results)
	}
	for _, r := range results {
		if carriesAll(r, needs) {
			return nil
		}
	}
	return fmt.Errorf("no proxy carries every transport of --need %s", strings.Join(needs, ","))
}

// parseNeed checks a comma-separated list of transports.
func parseNeed(s string) ([]string, error) {
	var out []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(strings.ToLower(n))
		if n == "" {
			continue
		}
		known := false
		for _, t := range check.Transports {
			known = known || t == n
		}
		if !known {
			return nil, fmt.Errorf("unknown transport %q (want %s)", n, strings.Join(check.Transports, ", "))
		}
		out = append(out, n)
	}
	return out, nil
}

func carriesAll(r check.Result, needs []string) bool {
	if len(r.Carries) == 0 {
		return false
	}
	for _, n := range needs {
		if !r.Carried(n) {
			return false
		}
	}
	return true
}

// readTargets reads the arguments: "-" is a list on standard input, an
// existing file is a list, anything else one proxy. Bad lines come back
// with their source; a bad argument is an error.
func readTargets(stdio Stdio, args []string) ([]check.Target, []string, error) {
	var (
		targets []check.Target
		bad     []string
		seen    = map[string]bool{}
	)
	add := func(src string, ts []check.Target, errs []check.LineError) {
		for _, e := range errs {
			bad = append(bad, src+":"+strconv.Itoa(e.Line)+": "+e.Err+": "+strconv.Quote(e.Text))
		}
		for _, t := range ts {
			if k := t.URL.String(); seen[k] {
				bad = append(bad, fmt.Sprintf("%s:%d: repeats an earlier proxy: %q", src, t.Line, t.String()))
			} else {
				seen[k] = true
				targets = append(targets, t)
			}
		}
	}
	for _, a := range args {
		if a == "-" {
			ts, errs, err := check.ParseList(stdio.In)
			if err != nil {
				return nil, nil, fmt.Errorf("read standard input: %w", err)
			}
			add("-", ts, errs)
			continue
		}
		if f, err := os.Open(a); err == nil {
			ts, errs, err := check.ParseList(f)
			f.Close()
			if err != nil {
				return nil, nil, fmt.Errorf("read %s: %w", a, err)
			}
			add(a, ts, errs)
			continue
		}
		t, err := check.ParseTarget(a)
		if err != nil {
			return nil, nil, fmt.Errorf("%q is neither a file nor a proxy: %v", a, err)
		}
		add("argument", []check.Target{t}, nil)
	}
	return targets, bad, nil
}

// checkAll checks targets, n at once, and returns the results in their
// order.
func checkAll(ctx context.Context, cfg check.Config, targets []check.Target, n int, bar *progressBar) []check.Result {
	results := make([]check.Result, len(targets))
	sem := make(chan struct{}, n)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // guards done
		done int
	)
	if len(targets) > 1 {
		bar.update(0, len(targets), "checking")
		defer bar.clear()
	}
	for i, t := range targets {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = check.Check(ctx, cfg, t)
			mu.Lock()
			done++
			if len(targets) > 1 {
				bar.update(done, len(targets), t.String())
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return results
}

// protocolCell is one protocol in the table: its timings, or why not.
func protocolCell(r check.Result, proto string) string {
	for _, p := range r.Protocols {
		if p.Protocol != proto {
			continue
		}
		if !p.OK {
			if strings.HasPrefix(p.Error, "not probed") {
				return "n/a"
			}
			return "no"
		}
		return fmt.Sprintf("%.0f/%.0fms", p.ConnectMS, p.TTFBMS)
	}
	return "-"
}

// transportCell is one transport: ok, or the worst it did over the
// protocols that work.
func transportCell(r check.Result, tr string) string {
	if r.Carried(tr) {
		return "ok"
	}
	worst := ""
	for _, p := range r.Protocols {
		for _, t := range p.Transports {
			if t.Transport == tr && (worst == "" || t.Status == check.StatusBuffered || t.Status == check.StatusCut) {
				worst = t.Status
			}
		}
	}
	if worst == "" {
		return "-"
	}
	return worst
}

// writeCheckTable prints one aligned row a proxy (protocols as
// connect/TTFB, transports as ok/buffered/cut/failed), then the verdicts
// and the reasons behind each failure.
func writeCheckTable(w io.Writer, results []check.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := append([]string{"PROXY"}, check.Protocols...)
	for _, t := range check.Transports {
		head = append(head, strings.ToUpper(t))
	}
	head = append(head, "ANONYMITY")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range results {
		row := []string{r.Proxy}
		for _, p := range check.Protocols {
			row = append(row, protocolCell(r, p))
		}
		for _, t := range check.Transports {
			row = append(row, transportCell(r, t))
		}
		row = append(row, or(r.Anonymity, "-"))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range results {
		fmt.Fprintf(w, "%s: %s\n", r.Proxy, r.Verdict)
		// Protocols failing the same way share a line: a proxy that does
		// not speak SOCKS times out the same on all of them.
		var order []string
		byErr := map[string][]string{}
		for _, p := range r.Protocols {
			if p.OK || p.Error == "" || strings.HasPrefix(r.Verdict, "carries nothing: ") {
				continue
			}
			if byErr[p.Error] == nil {
				order = append(order, p.Error)
			}
			byErr[p.Error] = append(byErr[p.Error], p.Protocol)
		}
		for _, e := range order {
			fmt.Fprintf(w, "  %s: %s\n", strings.Join(byErr[e], ", "), e)
		}
		for _, p := range r.Protocols {
			for _, t := range p.Transports {
				if t.Status != check.StatusOK {
					fmt.Fprintf(w, "  %s %s: %s (%s)\n", p.Protocol, t.Transport, t.Status, t.Detail)
				}
			}
		}
	}
}

func or(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// csvHeader is the --csv header: per protocol ok and timings, per
// transport its best status.
func csvHeader() []string {
	h := []string{"proxy", "line", "verdict", "models", "carries", "anonymity"}
	for _, p := range check.Protocols {
		h = append(h, p, p+"_connect_ms", p+"_ttfb_ms")
	}
	return append(h, check.Transports...)
}

func writeCheckCSV(w io.Writer, results []check.Result) {
	cw := csv.NewWriter(w)
	cw.Write(csvHeader())
	for _, r := range results {
		row := []string{r.Proxy, strconv.Itoa(r.Line), r.Verdict, strings.Join(r.Models, ";"), strings.Join(r.Carries, ";"), r.Anonymity}
		for _, proto := range check.Protocols {
			ok, c, f := "", "", ""
			for _, p := range r.Protocols {
				if p.Protocol == proto {
					ok = strconv.FormatBool(p.OK)
					if p.OK {
						c, f = strconv.FormatFloat(p.ConnectMS, 'f', 3, 64), strconv.FormatFloat(p.TTFBMS, 'f', 3, 64)
					}
				}
			}
			row = append(row, ok, c, f)
		}
		for _, t := range check.Transports {
			row = append(row, transportCell(r, t))
		}
		cw.Write(row)
	}
	cw.Flush()
}
