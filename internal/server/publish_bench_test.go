package server_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
	"github.com/duplexhq/duplex/internal/hubtest"
)

// publishBody is the body `duplex bench publish` sends by default.
var publishBody = bench.DefaultPublishData

// BenchmarkPublishHTTP measures POST /v1/channels/{channel}/messages, the
// request/response publish of issue 2, in-process so it can be profiled
// (go test -cpuprofile):
//
//   - handler: the hub's HTTP handler called directly, no network: the
//     server-side cost of one publish;
//   - loopback: a real 127.0.0.1 listener and 8 concurrent keep-alive
//     net/http clients in the same process, hub and load sharing the cores;
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

// benchLoopback publishes b.N times from 8 goroutines, each with one
// keep-alive connection to base.
func benchLoopback(b *testing.B, base string) {
	const clients = 8
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := base + "/v1/channels/bench/messages"
	b.SetParallelism((clients + 1) / 2) // × GOMAXPROCS (2 here) goroutines
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/json", bytes.NewReader(publishBody))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// discardWriter is an http.ResponseWriter that keeps only the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }
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
