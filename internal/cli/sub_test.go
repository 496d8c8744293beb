package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/msg"
)

// syncBuffer is a bytes.Buffer safe to write from Main and read from the
// test.
type syncBuffer struct {
	mu         sync.Mutex // guards b, closed
	b          strings.Builder
	closed     bool
	subscribed chan struct{} // closed when "subscribed" is written
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{subscribed: make(chan struct{})} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	if !s.closed && strings.Contains(s.b.String(), "subscribed to") {
		s.closed = true
		close(s.subscribed)
	}
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cursorOf returns the cursor printed on stderr.
func cursorOf(t *testing.T, stderr string) string {
	t.Helper()
	for _, l := range strings.Split(stderr, "\n") {
		if c, ok := strings.CutPrefix(l, "cursor: "); ok {
			if _, err := msg.ParseCursor(c); err != nil {
				t.Fatalf("printed cursor %q: %v", c, err)
			}
			return c
		}
	}
	t.Fatalf("no cursor on stderr: %q", stderr)
	return ""
}

func publishHub(t *testing.T, h *hubtest.Hub, ch string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := h.Hub.Publish(context.Background(), ch, json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
}

// checkLines checks NDJSON envelopes n=from..to on ch.
func checkLines(t *testing.T, lines []string, ch string, from int) {
	t.Helper()
	for i, l := range lines {
		var e msg.Envelope
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		var d struct{ N int }
		json.Unmarshal(e.Data, &d)
		if e.Type != "message" || e.Channel != ch || d.N != from+i || e.Offset != uint64(from+i) {
			t.Fatalf("line %d: %q, want n=%d", i, l, from+i)
		}
	}
}

// TestSubCountAndResume: duplex sub over every transport replays from a
// cursor, stops after --count, prints the cursor, and a second run from
// that cursor continues with no loss and no duplicate.
func TestSubCountAndResume(t *testing.T) {
	h := hubtest.Start(t, nil)
	for _, tr := range []string{"ws", "sse", "stream", "poll", "auto"} {
		t.Run(tr, func(t *testing.T) {
			ch := "sub-" + tr
			publishHub(t, h, ch, 1, 5)
			ctx := context.Background()
			code, out, errOut := runMain(t, ctx, "", "sub", "--url", h.URL, "--transport", tr, "--proxy", "direct",
				"--cursor", ch+"::0", "--count", "3", ch)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 {
				t.Fatalf("%d lines: %q", len(lines), out)
			}
			checkLines(t, lines, ch, 1)
			cur := cursorOf(t, errOut)
			if !strings.HasSuffix(cur, ":3") {
				t.Fatalf("cursor %q after 3 messages", cur)
			}
			code, out, errOut = runMain(t, ctx, "", "sub", "--url", h.URL, "--transport", tr, "--proxy", "direct",
				"--cursor", cur, "--count", "2", ch)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			checkLines(t, strings.Split(strings.TrimSpace(out), "\n"), ch, 4)
			if cur := cursorOf(t, errOut); !strings.HasSuffix(cur, ":5") {
				t.Fatalf("cursor %q after 5 messages", cur)
			}
		})
	}
}

// TestSubInterrupt: duplex sub runs until its context is cancelled (what
// Ctrl-C and SIGTERM do in cmd/duplex), prints live messages as they come,
// exits 0 and prints the cursor of the last one — also for a channel that
// got nothing: where it started.
func TestSubInterrupt(t *testing.T) {
	h := hubtest.Start(t, nil)
	for _, tr := range []string{"ws", "sse", "stream", "poll"} {
		t.Run(tr, func(t *testing.T) {
			a, b := "int-"+tr+"-a", "int-"+tr+"-b"
			publishHub(t, h, b, 1, 2) // b has history; sub starts at now
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			pr, pw := io.Pipe()
			errOut := newSyncBuffer()
			done := make(chan int, 1)
			go func() {
				done <- Main(ctx, []string{"sub", "--url", h.URL, "--transport", tr, "--proxy", "direct", a, b}, Stdio{In: strings.NewReader(""), Out: pw, Err: errOut})
				pw.Close()
			}()
			// Wait for "subscribed" on stderr: then the subscription is in
			// place and a publish must come through.
			select {
			case <-errOut.subscribed:
			case c := <-done:
				t.Fatalf("sub exited %d early: %s", c, errOut.String())
			}
			publishHub(t, h, a, 1, 1)
			sc := bufio.NewScanner(pr)
			if !sc.Scan() {
				t.Fatalf("no output; stderr %q", errOut.String())
			}
			first := sc.Text()
			var e msg.Envelope
			if err := json.Unmarshal([]byte(first), &e); err != nil || e.Channel != a {
				t.Fatalf("first line %q", first)
			}
			cancel()
			for sc.Scan() { // drain whatever else was printed
			}
			if code := <-done; code != 0 {
				t.Fatalf("exit %d after cancel, stderr %q", code, errOut.String())
			}
			cur, err := msg.ParseCursor(cursorOf(t, errOut.String()))
			if err != nil {
				t.Fatal(err)
			}
			if cur[a].Offset < e.Offset || cur[a].Epoch != e.Epoch {
				t.Fatalf("cursor %v, first message %+v", cur, e)
			}
			if cur[b].Offset != 2 {
				t.Fatalf("cursor %v: channel %s should stand at its start, offset 2", cur, b)
			}
		})
	}
}

// TestSubErrors: bad flags and refused subscriptions exit non-zero with a
// clear message.
func TestSubErrors(t *testing.T) {
	h := hubtest.Start(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no channel", []string{"sub", "--url", h.URL}, 2, "usage"},
		{"bad channel", []string{"sub", "--url", h.URL, "a b"}, 1, "invalid channel"},
		{"bad cursor", []string{"sub", "--url", h.URL, "--cursor", "nope", "c"}, 1, "--cursor"},
		{"cursor for another channel", []string{"sub", "--url", h.URL, "--cursor", "x::1", "c"}, 1, "not subscribed"},
		{"bad transport", []string{"sub", "--url", h.URL, "--transport", "smoke", "c"}, 1, "unknown transport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runMain(t, ctx, "", tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errOut, tc.code, tc.want)
			}
		})
	}
}
