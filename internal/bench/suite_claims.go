package bench

import (
	"fmt"
	"strings"
)

// This file turns the measurements into the six claims of the usual
// "WebSocket or HTTP?" table, each with the figure of this run that bears
// on it. The verdict is computed from the figures, never written ahead.

func (r *SuiteReport) delivery(variant string) (Delivery, bool) {
	for _, d := range r.Delivery {
		if d.Variant == variant && d.Delivered > 0 {
			return d, true
		}
	}
	return Delivery{}, false
}

func (r *SuiteReport) deliveryOf(transport string) (Delivery, bool) {
	for _, d := range r.Delivery {
		if d.Transport == transport && d.Delivered > 0 {
			return d, true
		}
	}
	return Delivery{}, false
}

func (r *SuiteReport) upstream(path string) (Upstream, bool) {
	for _, u := range r.Upstream {
		if u.Path == path && u.Samples > 0 {
			return u, true
		}
	}
	return Upstream{}, false
}

func (r *SuiteReport) cacheRead(path string) (CacheRead, bool) {
	for _, c := range r.Cacheable {
		if c.Path == path && c.Samples > 0 && c.Error == "" {
			return c, true
		}
	}
	return CacheRead{}, false
}

func (r *SuiteReport) cold(transport string) (ColdStart, bool) {
	for _, c := range r.Cold {
		if c.Transport == transport && c.Samples > 0 {
			return c, true
		}
	}
	return ColdStart{}, false
}

func notMeasured(id, claim string) Claim {
	return Claim{ID: id, Claim: claim, Measured: "-", Verdict: "not measured", Reading: "the measurement it needs failed in this run; see the warnings"}
}

// DeriveClaims sets r.Claims from r's measurements (RunSuite does; a
// report read back from JSON may be derived again by a newer duplex).
func (r *SuiteReport) DeriveClaims() { r.Claims = buildClaims(r) }

func buildClaims(r *SuiteReport) []Claim {
	return []Claim{claimDuplex(r), claimDirections(r), claimInitiates(r), claimConnPerRequest(r), claimOneResponse(r), claimCacheable(r)}
}

// 1. "WebSocket is full duplex; HTTP is half duplex."
func claimDuplex(r *SuiteReport) Claim {
	const id, text = "duplex", "WebSocket is full duplex; HTTP is half duplex"
	ws, ok1 := r.upstream("ws")
	post, ok2 := r.upstream("post")
	fresh, ok3 := r.upstream("post-new-conn")
	if !ok1 || !ok2 {
		return notMeasured(id, text)
	}
	c := Claim{ID: id, Claim: text}
	c.Measured = fmt.Sprintf("client→server publish, acknowledged, while the same client receives %g msg/s: p50 %s on the open WebSocket, %s as a POST on a kept-alive connection", r.Config.Rate, fmtMicros(ws.Latency.P50), fmtMicros(post.Latency.P50))
	if ok3 {
		c.Measured += fmt.Sprintf(", %s as a POST on a new connection", fmtMicros(fresh.Latency.P50))
	}
	// Within a quarter of each other the samples do not tell them apart.
	switch {
	case post.Latency.P50 > 1.25*ws.Latency.P50:
		c.Verdict = "supported"
		c.Reading = fmt.Sprintf("sending on the socket that is already receiving was %.1f× quicker than a separate HTTP request", post.Latency.P50/ws.Latency.P50)
	case ws.Latency.P50 > 1.25*post.Latency.P50:
		c.Verdict = "contradicted"
		c.Reading = "a POST on a kept-alive connection beside the SSE stream was quicker than a publish on the WebSocket here: each HTTP/1.1 connection is half duplex, but a second one makes the pair full duplex; only a new connection per POST costs more"
	default:
		c.Verdict = "depends"
		c.Reading = "a POST on a kept-alive connection beside the SSE stream was as quick as a publish on the WebSocket here (within 25%): each HTTP/1.1 connection is half duplex, but a second one makes the pair full duplex; only a new connection per POST costs more"
	}
	return c
}

// 2. "WebSocket sends both ways; SSE and streaming only server→client."
func claimDirections(r *SuiteReport) Claim {
	const id, text = "directions", "WebSocket carries both directions on one connection; SSE and HTTP streaming carry one"
	ws, ok1 := r.upstream("ws")
	post, ok2 := r.upstream("post")
	if !ok1 || !ok2 {
		return notMeasured(id, text)
	}
	return Claim{
		ID: id, Claim: text, Verdict: "supported",
		Measured: fmt.Sprintf("per 1,000 client→server messages: %.0f HTTP requests and %.0f B up each over WebSocket, against %.0f requests and %.0f B up each beside an SSE stream", ws.RequestsPer1000, ws.UpBytesPerOp, post.RequestsPer1000, post.UpBytesPerOp),
		Reading:  fmt.Sprintf("the SSE client must send each message as a request of its own, %.0f× the bytes of a WebSocket frame", post.UpBytesPerOp/max(ws.UpBytesPerOp, 1)),
	}
}

// 3. "With HTTP the client has to ask each time."
func claimInitiates(r *SuiteReport) Claim {
	const id, text = "initiates", "With HTTP the client initiates every exchange; with WebSocket the server pushes"
	hist, ok1 := r.delivery("history, keep-alive")
	sse, ok2 := r.deliveryOf("sse")
	ws, ok3 := r.deliveryOf("ws")
	poll, ok4 := r.delivery("poll, keep-alive")
	if !ok1 || !ok2 || !ok3 {
		return notMeasured(id, text)
	}
	c := Claim{ID: id, Claim: text}
	c.Measured = fmt.Sprintf("push latency p50: polling every %gms %s, WebSocket %s, SSE %s", hist.PollIntervalMS, fmtMicros(hist.Latency.P50), fmtMicros(ws.Latency.P50), fmtMicros(sse.Latency.P50))
	if ws0, ok := r.delivery("ws (write-delay 0)"); ok {
		c.Measured += fmt.Sprintf(" (with the hub's write coalescing; WebSocket with --write-delay 0: %s)", fmtMicros(ws0.Latency.P50))
	}
	if ok4 {
		c.Measured += fmt.Sprintf(", long polling %s (%.0f requests per 1,000 messages)", fmtMicros(poll.Latency.P50), poll.RequestsPer1000)
	}
	c.Verdict = "depends"
	c.Reading = fmt.Sprintf("plain polling waits about half its interval on average (%gms here); SSE and NDJSON are HTTP too, and push like WebSocket", hist.PollIntervalMS/2)
	if ok4 {
		c.Reading += "; long polling is client-initiated yet answers as soon as a message exists"
	}
	return c
}

// 4. "HTTP opens a connection per request."
func claimConnPerRequest(r *SuiteReport) Claim {
	const id, text = "connection-per-request", "HTTP opens a new connection for every request (and pays a handshake each time)"
	on, ok1 := r.delivery("poll, keep-alive")
	off, ok2 := r.delivery("poll, no keep-alive")
	if !ok1 || !ok2 {
		return notMeasured(id, text)
	}
	c := Claim{ID: id, Claim: text, Verdict: "depends"}
	c.Measured = fmt.Sprintf("long polling, TCP handshakes per 1,000 delivered messages: %.1f with keep-alive, %.1f without (requests: %.0f and %.0f)", on.HandshakesPer1000, off.HandshakesPer1000, on.RequestsPer1000, off.RequestsPer1000)
	var cold []string
	for _, t := range SuiteTransports {
		if cs, ok := r.cold(t); ok {
			cold = append(cold, fmt.Sprintf("%s %s", t, fmtMicros(cs.Latency.P50)))
		}
	}
	if len(cold) > 0 {
		c.Measured += "; a cold client's first message (connect, request, upgrade): " + strings.Join(cold, ", ")
	}
	c.Reading = "true only with keep-alive off: HTTP/1.1 reuses the connection by default, so handshakes are paid once, as with a WebSocket"
	return c
}

// 5. "One response per request."
func claimOneResponse(r *SuiteReport) Claim {
	const id, text = "one-response", "HTTP gives one response per request; only WebSocket streams"
	sse, ok1 := r.deliveryOf("sse")
	stream, ok2 := r.deliveryOf("stream")
	poll, ok3 := r.delivery("poll, keep-alive")
	if !ok1 || !ok2 {
		return notMeasured(id, text)
	}
	c := Claim{ID: id, Claim: text, Verdict: "contradicted"}
	c.Measured = fmt.Sprintf("messages per HTTP response: SSE %.0f, NDJSON stream %.0f", sse.MessagesPerResponse, stream.MessagesPerResponse)
	if ok3 {
		c.Measured += fmt.Sprintf(", long polling %.2f", poll.MessagesPerResponse)
	}
	c.Reading = "one request, one response — but a response may last the whole session and carry every message: SSE and NDJSON deliver as many per response as the run published"
	return c
}

// 6. "HTTP for static, cacheable data; WebSocket for constant updates."
func claimCacheable(r *SuiteReport) Claim {
	const id, text = "cacheable", "Use HTTP for static, cacheable data and WebSocket for constant updates"
	first, ok1 := r.cacheRead("http-first")
	reval, ok2 := r.cacheRead("http-revalidate")
	ws, ok3 := r.cacheRead("ws-history")
	if !ok1 || !ok2 || !ok3 {
		return notMeasured(id, text)
	}
	c := Claim{ID: id, Claim: text, Verdict: "supported"}
	c.Measured = fmt.Sprintf("reading a %d-message page again: %.0f B down with If-None-Match (304, p50 %s), 0 B from a cache honouring `%s`, %.0f B over the WebSocket every time (p50 %s); first read %.0f B",
		first.Messages, reval.DownBytesPerOp, fmtMicros(reval.Latency.P50), first.CacheControl, ws.DownBytesPerOp, fmtMicros(ws.Latency.P50), first.DownBytesPerOp)
	if ws1, ok := r.deliveryOf("ws"); ok {
		if h, ok := r.delivery("history, keep-alive"); ok {
			c.Measured += fmt.Sprintf("; for constant updates, bytes down per delivered message: WebSocket %.0f B, polling %.0f B", ws1.DownBytesPerMsg, h.DownBytesPerMsg)
		}
	}
	c.Reading = fmt.Sprintf("a revalidated page cost %.0f× fewer bytes than asking again over the socket, and an immutable one nothing at all", ws.DownBytesPerOp/max(reval.DownBytesPerOp, 1))
	return c
}
