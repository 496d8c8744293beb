package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// FuzzPollTimeout: timeout= parses to a duration in [0, max] or a 400, for
// any text.
func FuzzPollTimeout(f *testing.F) {
	for _, s := range []string{"25s", "25", "2.5", "0", "1m", "60.0001", "-0", "1e1", "0x10", "NaN", "+Inf", "1h", "500ms", "1.5e-9"} {
		f.Add(s)
	}
	s := &Server{cfg: Config{PollTimeout: 25 * time.Second, PollMaxTimeout: time.Minute}}
	f.Fuzz(func(t *testing.T, v string) {
		d, err := s.parsePollTimeout(url.Values{"timeout": {v}})
		if err != nil {
			if msg.CodeOf(err) != msg.CodeBadRequest {
				t.Fatalf("%q: error %v is not bad_request", v, err)
			}
			return
		}
		if d < 0 || d > time.Minute {
			t.Fatalf("%q: %v out of range", v, d)
		}
	})
}

// FuzzPollRequest: any query string and Last-Event-ID through the real
// handler answers 200 with a well-formed body and cursor, or a JSON 400.
func FuzzPollRequest(f *testing.F) {
	f.Add("channel=a&cursor=a::0&timeout=0", "")
	f.Add("channel=a&channel=b&cursor=a:k3v9x2:42,b::7", "a::1")
	f.Add("channel=a%3Ab&cursor=a:b:e1:3", "")
	f.Add("channel=a&channel=a", "")
	f.Add("cursor=,&channel=", "x")
	// On memory even with DUPLEX_TEST_ENGINE=redis: this fuzzes query
	// parsing through the handler, in-process, at fuzzing speed.
	hb, err := hub.New(context.Background(), hub.Config{Engine: memory.New(memory.Config{}), MaxChannels: 8})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { hb.Shutdown(context.Background()) })
	srv, err := New(Config{Hub: hb, PollTimeout: time.Nanosecond, PollMaxTimeout: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query, lastEventID string) {
		for _, path := range []string{"/v1/poll", "/v1/sse", "/v1/stream"} {
			r := httptest.NewRequest("GET", "/", nil)
			r.URL.Path, r.URL.RawQuery = path, query
			r.Header.Set("Last-Event-ID", lastEventID)
			ctx, cancel := context.WithCancel(context.Background())
			if path != "/v1/poll" {
				cancel() // streams: only the request checks matter here
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, r.WithContext(ctx))
			cancel()
			switch rec.Code {
			case http.StatusOK:
				if path != "/v1/poll" {
					continue
				}
				var pr msg.PollResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &pr); err != nil {
					t.Fatalf("%s?%s: 200 with bad body %q", path, query, rec.Body)
				}
				if _, err := msg.ParseCursor(pr.Cursor); err != nil || pr.Cursor == "" {
					t.Fatalf("%s?%s: cursor %q: %v", path, query, pr.Cursor, err)
				}
			case http.StatusServiceUnavailable:
				if path == "/v1/poll" {
					t.Fatalf("%s?%s: status %d %s", path, query, rec.Code, rec.Body)
				}
				// a stream whose request was canceled before it began
			case http.StatusBadRequest:
				var eb msg.ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == nil || eb.Error.Message == "" {
					t.Fatalf("%s?%s: 400 with bad body %q", path, query, rec.Body)
				}
			default:
				t.Fatalf("%s?%s: status %d %s", path, query, rec.Code, rec.Body)
			}
		}
	})
}
