package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// What the multi-hub tests share: publishing over HTTP and recording what
// was acknowledged, reading a channel's whole history back as the truth,
// and checking every follower against it.

// acked is a set of acknowledged (201) publications, safe for concurrent
// use.
type acked struct {
	mu   sync.Mutex // guards list, errs
	list []seen
	// statuses counts every answer by HTTP status (0: no answer).
	statuses map[int]int
}

func newAcked() *acked { return &acked{statuses: map[int]int{}} }

func (a *acked) add(s seen, status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.statuses[status]++
	if status == http.StatusCreated {
		a.list = append(a.list, s)
	}
}

func (a *acked) count(status int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.statuses[status]
}

func (a *acked) all() []seen {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.list)
}

func (a *acked) statusesString() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fmt.Sprint(a.statuses)
}

// publishClient carries the tests' POSTs: no proxy, each bounded.
var publishClient = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}

// post publishes data on hubURL over HTTP and returns the status (0 when
// no answer came) and, on 201, where it landed.
func post(hubURL, channel, data string) (int, seen, error) {
	resp, err := publishClient.Post(hubURL+"/v1/channels/"+url.PathEscape(channel)+"/messages", "application/json", strings.NewReader(data))
	if err != nil {
		return 0, seen{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, seen{}, err
	}
	if resp.StatusCode != http.StatusCreated {
		return resp.StatusCode, seen{}, fmt.Errorf("POST %s on %s: %s %s", channel, hubURL, resp.Status, body)
	}
	var p msg.Published
	if err := json.Unmarshal(body, &p); err != nil {
		return resp.StatusCode, seen{}, fmt.Errorf("201 body %q: %w", body, err)
	}
	if p.Channel != channel || !msg.ValidEpoch(p.Epoch) || p.Offset == 0 {
		return resp.StatusCode, seen{}, fmt.Errorf("201 body %q", body)
	}
	return resp.StatusCode, seen{Channel: channel, Epoch: p.Epoch, Offset: p.Offset, Data: data}, nil
}

// mustPost publishes and fails the test on anything but 201.
func mustPost(t *testing.T, a *acked, hubURL, channel, data string) seen {
	t.Helper()
	status, s, err := post(hubURL, channel, data)
	if err != nil {
		t.Fatal(err)
	}
	if a != nil {
		a.add(s, status)
	}
	return s
}

// postUntilAccepted publishes, retrying while the hub answers 503 (Redis
// coming back, or the hub's Redis client not yet reconnected), for at most
// d.
func postUntilAccepted(t *testing.T, a *acked, hubURL, channel, data string, d time.Duration) seen {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		status, s, err := post(hubURL, channel, data)
		if a != nil {
			a.add(s, status)
		}
		if err == nil {
			return s
		}
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("publish (retried on 503 for %v): %v", d, err)
		}
		time.Sleep(20 * time.Millisecond) // a retry backoff, not a synchronisation
	}
}

// history reads channel's whole history from hubURL, page by page.
func history(t *testing.T, hubURL, channel string) []seen {
	t.Helper()
	var out []seen
	after := uint64(0)
	for {
		resp, err := publishClient.Get(fmt.Sprintf("%s/v1/channels/%s/messages?after=%d&limit=1000", hubURL, url.PathEscape(channel), after))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("history of %s: %s %s", channel, resp.Status, body)
		}
		var h msg.History
		if err := json.Unmarshal(body, &h); err != nil {
			t.Fatal(err)
		}
		for _, m := range h.Messages {
			out = append(out, seen{Channel: m.Channel, Epoch: m.Epoch, Offset: m.Offset, Data: string(m.Data)})
		}
		if len(h.Messages) < 1000 {
			return out
		}
		after = h.Next
	}
}

// checkHistory checks that a channel's history is offsets 1…N of one
// epoch without a hole and holds every acknowledged publication of it
// with its data.
func checkHistory(t *testing.T, channel string, hist []seen, ack []seen) {
	t.Helper()
	for i, m := range hist {
		if m.Offset != uint64(i+1) || m.Epoch != hist[0].Epoch {
			t.Fatalf("history of %s: entry %d is %s, want offset %d of epoch %s", channel, i, m, i+1, hist[0].Epoch)
		}
	}
	for _, a := range ack {
		if a.Channel != channel {
			continue
		}
		if a.Offset == 0 || a.Offset > uint64(len(hist)) || hist[a.Offset-1].Epoch != a.Epoch || hist[a.Offset-1].Data != a.Data {
			t.Fatalf("acknowledged %s is not in the history of %s (%d entries)", a, channel, len(hist))
		}
	}
}

// fence publishes one last message on each channel and waits until every
// follower has it. Each channel is ordered, so once a follower has the
// fence it has had every chance to show a loss or a duplicate before it.
// Every follower that does not get there by the deadline is reported
// (with its last events), then the test stops.
func fence(t *testing.T, hubURL string, channels []string, fs []follower, d time.Duration) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	expired := false
	late := false
	for _, ch := range channels {
		data := `{"fence":"` + ch + `"}`
		// A hub may answer 503 for a moment after Redis came back.
		postUntilAccepted(t, nil, hubURL, ch, data, 20*time.Second)
		for _, f := range fs {
			for arrived := false; !arrived; {
				ev, connects, changed := f.snapshot()
				if arrived = hasMessage(ch, data)(ev, connects); arrived {
					break
				}
				if !expired {
					select {
					case <-changed:
						continue
					case <-deadline.C:
						expired = true
					}
				}
				late = true
				t.Errorf("%s: the fence of %s did not arrive within %v (%d connects, %d events, the last: %s)",
					f.Name(), ch, d, connects, len(ev), lastSeen(ev, 4))
				break
			}
		}
	}
	if late {
		t.FailNow()
	}
}

// lastSeen formats the last n events of ev on one line.
func lastSeen(ev []seen, n int) string {
	var parts []string
	for _, e := range ev[max(0, len(ev)-n):] {
		parts = append(parts, e.String())
	}
	return strings.Join(parts, "; ")
}

// checkFollowers checks that each follower received, per channel, exactly
// want[channel] (ignoring which hub each event came from): every message
// once, in order, and a gap exactly where want has one.
func checkFollowers(t *testing.T, fs []follower, want map[string][]seen) {
	t.Helper()
	for _, f := range fs {
		ev, _, _ := f.snapshot()
		got := map[string][]seen{}
		for _, e := range ev {
			got[e.Channel] = append(got[e.Channel], e)
		}
		for ch, w := range want {
			if !slices.EqualFunc(got[ch], w, sameEvent) {
				t.Errorf("%s, channel %s: received %d events, want %d:\n%s", f.Name(), ch, len(got[ch]), len(w), diffSeen(got[ch], w))
			}
		}
		for ch := range got {
			if _, ok := want[ch]; !ok {
				t.Errorf("%s: events of channel %s, not subscribed", f.Name(), ch)
			}
		}
	}
}

// sameEvent compares two events but for the hub they came from.
func sameEvent(a, b seen) bool {
	a.Hub, b.Hub = 0, 0
	return a == b
}

// diffSeen describes the first difference of two event lists.
func diffSeen(got, want []seen) string {
	for i := 0; i < max(len(got), len(want)); i++ {
		if i < len(got) && i < len(want) && sameEvent(got[i], want[i]) {
			continue
		}
		g, w := "(none)", "(none)"
		if i < len(got) {
			g = got[i].String()
		}
		if i < len(want) {
			w = want[i].String()
			w = w[:strings.LastIndex(w, " (hub")] // the history's hub is no part of it
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "  first difference at event %d: got %q, want %q\n", i, g, w)
		for j := max(0, i-3); j < min(len(got), i+4); j++ {
			fmt.Fprintf(&b, "  got[%d] = %s\n", j, got[j])
		}
		return b.String()
	}
	return "  (equal)"
}

// eachHubHealthy checks that every hub process still runs (no crash, no
// restart: the same PID the test started) and answers /healthz with 200.
func eachHubHealthy(t *testing.T, hubs []*hubProc) {
	t.Helper()
	for _, h := range hubs {
		if !h.Running() {
			t.Fatalf("hub %s (pid %d) is not running:\n%s", h.Name, h.PID, h.Log())
		}
		// /healthz may lag the engine's reconnect by a moment: wait for it.
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, err := h.Health()
			if err == nil && code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("hub %s /healthz: %d %v", h.Name, code, err)
			}
			time.Sleep(20 * time.Millisecond) // polling a condition, not standing in for it
		}
	}
}

// pubsubClients returns how many pub/sub connections the Redis at addr
// serves (CLIENT LIST TYPE pubsub).
func pubsubClients(t *testing.T, do func(args ...string) ([]string, error)) int {
	t.Helper()
	r, err := do("CLIENT", "LIST", "TYPE", "pubsub")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(strings.Join(r, "\n"), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

// waitUntil polls cond until it holds or fails the test at the deadline.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not standing in for it
	}
}
