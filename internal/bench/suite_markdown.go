package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteMarkdown writes r as the Markdown report: the six claims first,
// then a table per measurement, each saying its units and what was
// counted. charts, when not empty, are image file names (relative to the
// report) shown at the end.
func (r *SuiteReport) WriteMarkdown(w io.Writer, charts []string) error {
	b := &strings.Builder{}
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	m := r.Machine
	p("# duplex bench report\n\n")
	p("Measured %s in %.0fs on %s (%d cores, %s/%s, kernel %s, %s, %d MiB).\n", r.Started.Format(time.RFC3339), r.WallSeconds, m.CPUModel, m.Cores, m.OS, m.Arch, m.Kernel, m.GoVersion, m.MemoryMiB)
	p("Load average before %.2f %.2f %.2f, after %.2f %.2f %.2f.\n\n", m.LoadBefore[0], m.LoadBefore[1], m.LoadBefore[2], m.LoadAfter[0], m.LoadAfter[1], m.LoadAfter[2])
	for _, h := range r.Hubs {
		wd := "unknown (a hub the suite did not start)"
		if h.WriteDelayMS >= 0 {
			wd = fmt.Sprintf("%gms", h.WriteDelayMS)
		}
		where := "by URL; CPU from its /metrics"
		if h.PID > 0 {
			where = fmt.Sprintf("child process %d of this command; CPU from /proc/%d/task/*/schedstat", h.PID, h.PID)
		}
		p("- Hub `%s` at %s (%s), write coalescing `--write-delay` %s", h.Name, h.URL, where, wd)
		if h.Proxy != "" {
			p(", readers through proxy %s", h.Proxy)
		}
		p(".\n")
	}
	c := r.Config
	p("- Workload: %d subscribers on one fresh channel per measurement, %g publications/s POSTed by a separate client, %d B of data each, %s measured after %s of warm-up, %d round(s) (interleaved across transports); plain polling every %s.\n\n",
		c.Subscribers, c.Rate, c.Size, c.Duration, c.Warmup, c.Repeat, c.PollInterval)
	for _, wn := range r.Warnings {
		p("> **Warning:** %s\n>\n", wn)
	}
	if len(r.Warnings) > 0 {
		p("\n")
	}

	p("## The six claims\n\n")
	p("| # | Claim | Measured in this run | Verdict | Reading |\n|---|---|---|---|---|\n")
	for i, cl := range r.Claims {
		p("| %d | %s | %s | **%s** | %s |\n", i+1, cl.Claim, cl.Measured, cl.Verdict, cl.Reading)
	}

	p("\n## Delivery per transport\n\n")
	p("Latency is publish (the publisher's clock before its POST) to the reader's decode, in the measured window; p99 over rounds is min/median/max of each round's p99. Bytes are counted at the readers' sockets, headers and framing included, divided by messages delivered (down: hub→reader, up: reader→hub). Handshakes are TCP connections the readers opened, requests the HTTP requests (and WebSocket upgrades) they wrote, both per 1,000 delivered messages. CPU is milliseconds per 1,000 deliveries; client cores is the load generator's CPU over wall time.\n\n")
	p("| variant | delivered | p50 | p90 | p99 | max | p99 over rounds | down B/msg | up B/msg | handshakes /1000 | requests /1000 | msgs /response | hub CPU ms/1000 | client CPU ms/1000 | client cores |\n")
	p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, d := range r.Delivery {
		l := d.Latency
		mpr := fmt.Sprintf("%.1f", d.MessagesPerResponse)
		if d.Transport == "ws" {
			mpr = "n/a (frames)"
		}
		p("| %s | %d/%d | %s | %s | %s | %s | %s / %s / %s | %.0f | %.1f | %.1f | %.1f | %s | %s | %.1f | %.2f |\n",
			d.Variant, d.Delivered, d.Expected, fmtMicros(l.P50), fmtMicros(l.P90), fmtMicros(l.P99), fmtMicros(l.Max),
			fmtMicros(d.P99US.Min), fmtMicros(d.P99US.Median), fmtMicros(d.P99US.Max),
			d.DownBytesPerMsg, d.UpBytesPerMsg, d.HandshakesPer1000, d.RequestsPer1000, mpr,
			fmtOr(d.HubCPUMSPer1000, "%.1f"), d.ClientCPUMSPer1000, d.ClientCPUCores)
	}

	p("\n## Highest delivered rate before p99 runs away\n\n")
	p("Each transport at %d readers (at most 10), publish rate ×4 per rung from %g/s, %s a rung.\n\n", max(min(c.Subscribers, 10), 1), c.Rate, c.LadderStep)
	p("| transport | peak delivered msg/s | rungs (publish/s → delivered/s, p99) | note |\n|---|--:|---|---|\n")
	for _, pk := range r.Peaks {
		var rungs []string
		for _, s := range r.Ladder {
			if s.Transport == pk.Transport {
				mark := ""
				if s.RanAway {
					mark = " ✗"
				}
				rungs = append(rungs, fmt.Sprintf("%g → %.0f, %s%s", s.Rate, s.DeliveredSec, fmtMicros(s.P99US), mark))
			}
		}
		note := pk.Bound
		if pk.Capped {
			note = "no rung ran away: the peak is the ladder's top, not the limit"
		}
		p("| %s | %.0f | %s | %s |\n", pk.Transport, pk.DeliveredSec, strings.Join(rungs, "; "), note)
	}

	p("\n## Cold start: a new client's first message\n\n")
	p("From nothing to the first message (one published beforehand, asked for by cursor): TCP connect, HTTP request or WebSocket upgrade, subscribe, first frame.\n\n")
	p("| transport | samples | p50 | p90 | max | error |\n|---|--:|--:|--:|--:|---|\n")
	for _, cs := range r.Cold {
		p("| %s | %d | %s | %s | %s | %s |\n", cs.Transport, cs.Samples, fmtMicros(cs.Latency.P50), fmtMicros(cs.Latency.P90), fmtMicros(cs.Latency.Max), cs.Error)
	}

	p("\n## Client → server while receiving\n\n")
	p("One client subscribed and receiving %g msg/s publishes %d times, waiting for each acknowledgement: on its open WebSocket, or as POSTs beside its SSE stream. Bytes up and counts per publish / per 1,000 publishes.\n\n", c.Rate, c.Samples)
	p("| path | samples | p50 | p90 | max | up B/op | handshakes /1000 | requests /1000 | error |\n|---|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, u := range r.Upstream {
		p("| %s | %d | %s | %s | %s | %.0f | %.0f | %.0f | %s |\n", u.Path, u.Samples, fmtMicros(u.Latency.P50), fmtMicros(u.Latency.P90), fmtMicros(u.Latency.Max), u.UpBytesPerOp, u.HandshakesPer1000, u.RequestsPer1000, u.Error)
	}

	p("\n## Static, cacheable data: reading a history page again\n\n")
	p("A full page (100 messages) of a channel, read again and again. Bytes are counted at the socket per read.\n\n")
	p("| path | status | samples | messages | down B/op | up B/op | p50 | Cache-Control | error |\n|---|--:|--:|--:|--:|--:|--:|---|---|\n")
	for _, cr := range r.Cacheable {
		st := fmt.Sprint(cr.Status)
		switch {
		case cr.Path == "http-immutable":
			st = "(no request)"
		case cr.Status == 0:
			st = "-"
		}
		p("| %s | %s | %d | %d | %.0f | %.0f | %s | %s | %s |\n", cr.Path, st, cr.Samples, cr.Messages, cr.DownBytesPerOp, cr.UpBytesPerOp, fmtMicros(cr.Latency.P50), cr.CacheControl, cr.Error)
	}

	p("\n## Hub memory per idle subscriber\n\n")
	gc := "heap in use moves with garbage not yet collected (an idle hub runs no collection) and may even come out negative"
	if len(r.Idle) > 0 && r.Idle[0].FreshHub {
		gc = "read on a fresh hub for each transport, started with GOGC=10, so its heap in use is what the subscribers hold, not garbage an idle hub never collects"
	}
	p("The hub's /metrics before and with the idle subscribers (after %s idle; measured first, on a fresh hub), divided by their number. RSS, stack and goroutines are the steady figures; the heap figure is %s.\n\n", c.IdleSettle, gc)
	p("| transport | subscribers | heap KiB/sub | stack KiB/sub | RSS KiB/sub | goroutines/sub | error |\n|---|--:|--:|--:|--:|--:|---|\n")
	for _, ic := range r.Idle {
		p("| %s | %d | %.1f | %.1f | %.1f | %.1f | %s |\n", ic.Transport, ic.Subscribers, ic.HeapKiB, ic.StackKiB, ic.RSSKiB, ic.Goroutines, ic.Error)
	}
	p("\nPlain polling (history) holds no subscriber on the hub between requests: nothing to measure.\n")

	if len(r.Proxy) > 0 {
		p("\n## Through the proxy\n\n")
		p("Each transport for %s with 2 readers, direct and through %s.\n\n", c.Duration, r.Proxy[0].ProxiedURL)
		p("| transport | verdict | delivered | direct p50 | proxy p50 | detail |\n|---|---|--:|--:|--:|---|\n")
		for _, v := range r.Proxy {
			p("| %s | **%s** | %d/%d | %s | %s | %s |\n", v.Transport, v.Verdict, v.Delivered, v.Expected, fmtMicros(v.DirectP50), fmtMicros(v.ProxyP50), v.Detail)
		}
	}

	if len(charts) > 0 {
		p("\n## Charts\n\n")
		for _, ch := range charts {
			p("![%s](%s)\n\n", strings.TrimSuffix(ch, ".png"), ch)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtOr formats v, or returns none when v is 0 (unknown).
func fmtOr(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}
