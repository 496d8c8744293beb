package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/msg"
)

// publishBody is the body `duplex bench publish` sends by default.
var publishBody = bench.DefaultPublishData

// BenchmarkPublishHTTP measures POST /v1/channels/{channel}/messages, the
// request/response publish of issue 2, in-process so it can be profiled
// (go test -cpuprofile):
//
//   - handler: the hub's HTTP handler called directly, no network: the
//     server-side cost of one publish;
//   - loopback: a real 127.0.0.1 listener and 8 or 64 keep-alive
//     publishers of `duplex bench publish` (bench.RunPublish) in the same
//     process, hub and load sharing the cores;
//   - baseline-loopback: the same load against bench.BaselineHandler, the
//     bare net/http handler answering 201 that the hub is compared with.
//
// Run: go test -run '^$' -bench BenchmarkPublishHTTP -benchmem ./internal/server/
func BenchmarkPublishHTTP(b *testing.B) {
	b.Run("handler", func(b *testing.B) {
		h := hubtest.Start(b, nil)
		handler := h.Server.Handler()
		var body bytes.Reader
		req := httptest.NewRequest(http.MethodPost, "/v1/channels/bench/messages", nil)
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = int64(len(publishBody))
		w := &discardWriter{h: http.Header{}}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			body.Reset(publishBody)
			req.Body = io.NopCloser(&body)
			clear(w.h)
			w.status = 0
			handler.ServeHTTP(w, req)
			if w.status != http.StatusCreated {
				b.Fatalf("status %d", w.status)
			}
		}
	})
	b.Run("loopback", func(b *testing.B) {
		h := hubtest.Start(b, nil)
		benchLoopback(b, h.URL)
	})
	b.Run("baseline-loopback", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: bench.BaselineHandler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Shutdown(context.Background())
		benchLoopback(b, "http://"+ln.Addr().String())
	})
}

// benchLoopback publishes b.N times to base with `duplex bench publish`'s
// own load generator (bench.RunPublish, the lean conn client) over 8 and
// 64 keep-alive connections.
func benchLoopback(b *testing.B, base string) {
	for _, n := range []int{8, 64} {
		b.Run(fmt.Sprintf("publishers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			run, err := bench.RunPublish(context.Background(), bench.PublishConfig{
				URL: base, Publishers: n, Count: int64(b.N), Duration: time.Minute,
			})
			if err != nil {
				b.Fatal(err)
			}
			if run.Errors > 0 || run.Ops != int64(b.N) {
				b.Fatalf("%d publishes, %d errors (first: %s); want %d, 0", run.Ops, run.Errors, run.FirstError, b.N)
			}
		})
	}
}

// discardWriter is an http.ResponseWriter that keeps only the status. It
// takes read deadlines, as net/http's does, so the handler benchmark runs
// the body deadline's bookkeeping too (not the socket's timer).
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header             { return w.h }
func (w *discardWriter) SetReadDeadline(time.Time) error { return nil }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}

// TestPublishAnswer pins what the publish fast paths must keep: the 201
// body is byte for byte what json.Marshal(msg.Published) plus a newline
// was, and bodies of known, unknown, small and large length are read whole.
func TestPublishAnswer(t *testing.T) {
	h := hubtest.Start(t, nil)
	big := `{"text":"` + strings.Repeat("ab", 3000) + `"}`
	for i, tc := range []struct {
		body  string
		chunk bool // unknown length: Transfer-Encoding: chunked
	}{
		{body: `{"a":1}`},
		{body: ` { "a" : [1, 2] } `},
		{body: big},
		{body: big, chunk: true},
		{body: `"x"`, chunk: true},
	} {
		var body io.Reader = strings.NewReader(tc.body)
		if tc.chunk {
			body = io.MultiReader(body) // hides the length from net/http
		}
		resp, err := http.Post(h.URL+"/v1/channels/answer/messages", "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("case %d: %s: %s", i, resp.Status, got)
		}
		var p msg.Published
		if err := json.Unmarshal(got, &p); err != nil {
			t.Fatalf("case %d: %v: %s", i, err, got)
		}
		want, _ := json.Marshal(p)
		want = append(want, '\n')
		if !bytes.Equal(got, want) || p.Offset != uint64(i+1) || p.Channel != "answer" {
			t.Errorf("case %d: answer %q, want %q at offset %d", i, got, want, i+1)
		}
		if ct, cl := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Length"); ct != "application/json" || cl != strconv.Itoa(len(got)) {
			t.Errorf("case %d: Content-Type %q, Content-Length %q", i, ct, cl)
		}
		_, pubs, err := h.Hub.History(context.Background(), "answer", p.Offset-1, 1)
		var compact bytes.Buffer
		json.Compact(&compact, []byte(tc.body))
		if err != nil || len(pubs) != 1 || string(pubs[0].Data) != compact.String() {
			t.Errorf("case %d: stored %v, %v; want the compact body", i, pubs, err)
		}
	}
}
