package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/msg"
)

// A follower reads channels from a set of hubs the way a client behind a
// load balancer does: it reads from one hub, and whenever that connection
// ends (the hub died, answered 503, or the follower was told to move on)
// it connects to the next hub of the list with the cursor after the last
// event it recorded. Raw followers speak one transport's wire format
// directly (SSE, NDJSON, long polling, WebSocket frames) and keep every
// event exactly as received, duplicates included: the Go client would
// drop a duplicate, so it is checked separately ([goFollower]).

// seen is one event a follower received: a message, or a gap notice.
type seen struct {
	Gap     bool
	Channel string
	Epoch   string
	Offset  uint64 // a message's offset; a gap's next
	Data    string // a message's data, compact JSON
	Hub     int    // index of the hub it came from
}

func (s seen) String() string {
	if s.Gap {
		return fmt.Sprintf("gap %s:%s next %d (hub%d)", s.Channel, s.Epoch, s.Offset, s.Hub)
	}
	return fmt.Sprintf("%s:%s:%d %s (hub%d)", s.Channel, s.Epoch, s.Offset, s.Data, s.Hub)
}

// record is what one follower received, safe for concurrent use.
type record struct {
	name string

	mu       sync.Mutex // guards events, changed, connects, lastErr
	events   []seen
	changed  chan struct{} // closed and replaced on every change
	connects int
	lastErr  error
}

func newRecord(name string) *record { return &record{name: name, changed: make(chan struct{})} }

func (r *record) add(ev seen) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *record) connected() {
	r.mu.Lock()
	r.connects++
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *record) failed(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}

// snapshot returns the events so far and a channel closed at the next
// change.
func (r *record) snapshot() ([]seen, int, chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events), r.connects, r.changed
}

// waitFor waits until cond holds for the events (and connect count), or
// fails the test at the deadline, showing what arrived.
func (r *record) waitFor(t *testing.T, d time.Duration, what string, cond func(ev []seen, connects int) bool) {
	t.Helper()
	timeout := time.After(d)
	for {
		ev, n, changed := r.snapshot()
		if cond(ev, n) {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			r.mu.Lock()
			lastErr := r.lastErr
			r.mu.Unlock()
			t.Fatalf("%s: not %s within %v; %d connects, last error %v; received %d events:\n%s",
				r.name, what, d, n, lastErr, len(ev), formatSeen(ev))
		}
	}
}

// hasMessage is a waitFor condition: a message of channel with data has
// arrived.
func hasMessage(channel, data string) func([]seen, int) bool {
	return func(ev []seen, _ int) bool {
		for _, e := range ev {
			if !e.Gap && e.Channel == channel && e.Data == data {
				return true
			}
		}
		return false
	}
}

func formatSeen(ev []seen) string {
	var b strings.Builder
	for i, e := range ev {
		if i >= 60 && i < len(ev)-20 {
			if i == 60 {
				fmt.Fprintf(&b, "  … %d more …\n", len(ev)-80)
			}
			continue
		}
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

// rawFollower is a follower of one wire format.
type rawFollower struct {
	*record
	transport string // ws, sse, stream or poll
	hubs      []string
	channels  []string
	// hopEvery, when positive, makes the follower leave its hub after
	// that many messages on one connection and resume on the next.
	hopEvery int

	// Owned by the run goroutine.
	cursor msg.Cursor
	hub    int
}

// followRaw starts a raw follower of channels over transport, first on
// hubs[start], from the oldest retained offset of each channel (cursor
// "ch::0": the channels are new, so that is everything). It runs until the
// test ends.
func followRaw(t *testing.T, transport string, hubs []string, start int, channels []string, hopEvery int) *rawFollower {
	f := &rawFollower{
		record:    newRecord(fmt.Sprintf("raw %s follower from hub%d (hop %d)", transport, start, hopEvery)),
		transport: transport, hubs: hubs, channels: channels, hopEvery: hopEvery,
		cursor: msg.Cursor{}, hub: start,
	}
	for _, ch := range channels {
		f.cursor[ch] = msg.Position{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// errHop ends a connection on purpose: the follower moves to the next hub.
var errHop = errors.New("hop to the next hub")

func (f *rawFollower) run(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		var err error
		got := 0
		switch f.transport {
		case "sse":
			got, err = f.sse(ctx)
		case "stream":
			got, err = f.stream(ctx)
		case "poll":
			got, err = f.poll(ctx)
		case "ws":
			got, err = f.ws(ctx)
		default:
			panic("unknown transport " + f.transport)
		}
		if ctx.Err() != nil {
			return
		}
		f.failed(err)
		f.hub = (f.hub + 1) % len(f.hubs)
		if got > 0 || errors.Is(err, errHop) {
			failures = 0
			continue
		}
		// A retry backoff (a hub down, Redis down), not a synchronisation.
		failures++
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(min(failures, 20)) * 10 * time.Millisecond):
		}
	}
}

// deliver records a message or gap and advances the cursor.
func (f *rawFollower) deliver(ev seen) {
	ev.Hub = f.hub
	if ev.Gap {
		f.cursor[ev.Channel] = msg.Position{Epoch: ev.Epoch, Offset: ev.Offset - 1}
	} else {
		f.cursor[ev.Channel] = msg.Position{Epoch: ev.Epoch, Offset: ev.Offset}
	}
	f.add(ev)
}

func (f *rawFollower) query() url.Values {
	q := url.Values{}
	for _, ch := range f.channels {
		q.Add("channel", ch)
	}
	return q
}

// get opens a streaming GET and checks its status and content type.
func (f *rawFollower) get(ctx context.Context, u string, h http.Header, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := rawHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), contentType) {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s %q", u, resp.Status, b)
	}
	return resp, nil
}

// rawHTTP is the raw followers' HTTP client: no proxy, no overall timeout
// (streams are endless), a bounded dial.
var rawHTTP = &http.Client{Transport: &http.Transport{
	Proxy:               nil,
	DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	MaxIdleConnsPerHost: 16,
}}

// envelopeOrGap decodes one hub object; heartbeat is reported as ok=false.
func envelopeOrGap(b []byte) (seen, bool, error) {
	var f struct {
		Type    string          `json:"type"`
		Channel string          `json:"channel"`
		Epoch   string          `json:"epoch"`
		Offset  uint64          `json:"offset"`
		Next    uint64          `json:"next"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return seen{}, false, fmt.Errorf("decode %q: %w", b, err)
	}
	switch f.Type {
	case msg.TypeMessage:
		return seen{Channel: f.Channel, Epoch: f.Epoch, Offset: f.Offset, Data: string(f.Data)}, true, nil
	case msg.TypeGap:
		return seen{Gap: true, Channel: f.Channel, Epoch: f.Epoch, Offset: f.Next}, true, nil
	case msg.TypeHeartbeat:
		return seen{}, false, nil
	}
	return seen{}, false, fmt.Errorf("unexpected object %q", b)
}

// sse reads GET /v1/sse, resuming with Last-Event-ID.
func (f *rawFollower) sse(ctx context.Context) (int, error) {
	h := http.Header{"Last-Event-Id": {f.cursor.String()}}
	resp, err := f.get(ctx, f.hubs[f.hub]+"/v1/sse?"+f.query().Encode(), h, "text/event-stream")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	f.connected()
	br := bufio.NewReader(resp.Body)
	got := 0
	var event, data string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return got, fmt.Errorf("sse: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if data != "" {
				ev, ok, err := envelopeOrGap([]byte(data))
				if err != nil {
					return got, err
				}
				if ok && (event == "message") != !ev.Gap {
					return got, fmt.Errorf("sse: event %q carries %s", event, data)
				}
				if ok {
					f.deliver(ev)
					if !ev.Gap {
						got++
					}
					if f.hopEvery > 0 && got >= f.hopEvery {
						return got, errHop
					}
				}
			}
			event, data = "", ""
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
}

// stream reads GET /v1/stream (NDJSON) with cursor=.
func (f *rawFollower) stream(ctx context.Context) (int, error) {
	q := f.query()
	q.Set("cursor", f.cursor.String())
	resp, err := f.get(ctx, f.hubs[f.hub]+"/v1/stream?"+q.Encode(), nil, "application/x-ndjson")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	f.connected()
	br := bufio.NewReader(resp.Body)
	got := 0
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return got, fmt.Errorf("stream: %w", err)
		}
		ev, ok, err := envelopeOrGap(bytes.TrimSpace(line))
		if err != nil {
			return got, err
		}
		if ok {
			f.deliver(ev)
			if !ev.Gap {
				got++
			}
			if f.hopEvery > 0 && got >= f.hopEvery {
				return got, errHop
			}
		}
	}
}

// poll asks GET /v1/poll with cursor= again and again on one hub.
func (f *rawFollower) poll(ctx context.Context) (int, error) {
	got := 0
	for first := true; ; first = false {
		q := f.query()
		q.Set("cursor", f.cursor.String())
		q.Set("timeout", "2s")
		resp, err := f.get(ctx, f.hubs[f.hub]+"/v1/poll?"+q.Encode(), nil, "application/json")
		if err != nil {
			return got, err
		}
		if first {
			f.connected()
		}
		var pr msg.PollResponse
		err = json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&pr)
		resp.Body.Close()
		if err != nil {
			return got, fmt.Errorf("poll: %w", err)
		}
		// A poll answer lists gaps apart from messages; a gap of a
		// channel comes before that channel's messages.
		for _, g := range pr.Gaps {
			f.deliver(seen{Gap: true, Channel: g.Channel, Epoch: g.Epoch, Offset: g.Next})
		}
		for _, m := range pr.Messages {
			f.deliver(seen{Channel: m.Channel, Epoch: m.Epoch, Offset: m.Offset, Data: string(m.Data)})
			got++
		}
		if f.hopEvery > 0 && got >= f.hopEvery {
			return got, errHop
		}
	}
}

// ws reads /v1/ws, subscribing each channel with its cursor position.
func (f *rawFollower) ws(ctx context.Context) (int, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	c, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(f.hubs[f.hub], "http")+"/v1/ws",
		&websocket.DialOptions{Subprotocols: []string{"duplex.v1"}, HTTPClient: rawHTTP})
	cancel()
	if err != nil {
		return 0, err
	}
	defer c.CloseNow()
	c.SetReadLimit(8 << 20)
	for i, ch := range f.channels {
		cmd := map[string]any{"id": i + 1, "type": "subscribe", "channel": ch, "offset": f.cursor[ch].Offset}
		if e := f.cursor[ch].Epoch; e != "" {
			cmd["epoch"] = e
		}
		b, _ := json.Marshal(cmd)
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			return 0, err
		}
	}
	f.connected()
	got, acks := 0, 0
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return got, fmt.Errorf("ws: %w", err)
		}
		var head struct {
			Type, Code, Message string
		}
		if err := json.Unmarshal(b, &head); err != nil {
			return got, fmt.Errorf("ws frame %q: %w", b, err)
		}
		switch head.Type {
		case "ok":
			acks++
			continue
		case "error":
			return got, fmt.Errorf("ws error reply: %s", b)
		}
		ev, ok, err := envelopeOrGap(b)
		if err != nil {
			return got, err
		}
		if ok {
			f.deliver(ev)
			if !ev.Gap {
				got++
			}
			if f.hopEvery > 0 && got >= f.hopEvery && acks == len(f.channels) {
				c.Close(websocket.StatusNormalClosure, "moving on")
				return got, errHop
			}
		}
	}
}

// goFollower follows channels with the real Go client. With lb it is one
// subscription through a "load balancer" (a DialOptions.Dial that dials
// the first hub that accepts, starting with the one the previous
// connection went to), so its own reconnects carry it from a dead hub to
// a live one with its cursor. With hopEvery it instead closes its
// subscription after that many messages and subscribes on the next hub's
// client with Subscription.Cursor, as an application would.
type goFollower struct {
	*record
}

// followGo starts a Go client follower over transport, from the oldest
// retained offset of each channel, first on hubs[start].
func followGo(t *testing.T, tr client.Transport, hubs []string, start int, channels []string, hopEvery int) *goFollower {
	f := &goFollower{record: newRecord(fmt.Sprintf("Go client %s follower from hub%d (hop %d)", tr, start, hopEvery))}
	cur := msg.Cursor{}
	for _, ch := range channels {
		cur[ch] = msg.Position{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var lbMu sync.Mutex
	lbNext := start // guarded by lbMu
	opts := fastOpts(tr)
	opts.OnConnect = func(client.Transport) { f.connected() }
	opts.PollTimeout = 2 * time.Second
	if hopEvery == 0 {
		addrs := make([]string, len(hubs))
		for i, u := range hubs {
			addrs[i] = strings.TrimPrefix(u, "http://")
		}
		opts.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			lbMu.Lock()
			first := lbNext
			lbMu.Unlock()
			var err error
			for i := range addrs {
				n := (first + i) % len(addrs)
				var c net.Conn
				c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addrs[n])
				if err == nil {
					lbMu.Lock()
					lbNext = n
					lbMu.Unlock()
					return c, nil
				}
			}
			return nil, err
		}
	}
	hubOf := func() int {
		lbMu.Lock()
		defer lbMu.Unlock()
		return lbNext
	}
	go func() {
		defer close(done)
		hub := start
		// retry waits before the next attempt after a failed one: a
		// retry backoff (a hub or Redis down), not a synchronisation.
		retry := func(err error) {
			f.failed(err)
			hub = (hub + 1) % len(hubs)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
		for ctx.Err() == nil {
			c, err := client.Dial(ctx, hubs[hub], opts)
			if err != nil {
				retry(err)
				continue
			}
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			s, err := c.Subscribe(sctx, channels, &client.SubscribeOptions{Cursor: cur})
			scancel()
			if err != nil {
				c.Close()
				retry(err)
				continue
			}
			got := 0
			for {
				ev, err := s.Next(ctx)
				if err != nil {
					f.failed(err)
					break
				}
				h := hub
				if hopEvery == 0 {
					h = hubOf()
				}
				switch {
				case ev.Message != nil:
					m := ev.Message
					f.add(seen{Channel: m.Channel, Epoch: m.Epoch, Offset: m.Offset, Data: string(m.Data), Hub: h})
					got++
				case ev.Gap != nil:
					f.add(seen{Gap: true, Channel: ev.Gap.Channel, Epoch: ev.Gap.Epoch, Offset: ev.Gap.Next, Hub: h})
				}
				if hopEvery > 0 && got >= hopEvery {
					break
				}
			}
			cur = s.Cursor()
			s.Close()
			c.Close()
			hub = (hub + 1) % len(hubs)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// follower is what the checks need of either kind.
type follower interface {
	snapshot() ([]seen, int, chan struct{})
	waitFor(t *testing.T, d time.Duration, what string, cond func([]seen, int) bool)
	Name() string
}

func (r *record) Name() string { return r.name }

// followEverywhere starts, for each start hub, one raw follower of each
// transport and one Go client follower of each transport, all reading
// channels; hopEvery as in followRaw and followGo.
func followEverywhere(t *testing.T, hubs []string, starts []int, channels []string, hopEvery int) []follower {
	var fs []follower
	for _, start := range starts {
		for _, tr := range []string{"ws", "sse", "stream", "poll"} {
			fs = append(fs, followRaw(t, tr, hubs, start, channels, hopEvery))
		}
		for _, tr := range explicitTransports {
			fs = append(fs, followGo(t, tr, hubs, start, channels, hopEvery))
		}
	}
	return fs
}
