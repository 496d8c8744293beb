package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/bench"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/msg"
)

func TestStreamNDJSONLive(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{Heartbeat: 20 * time.Millisecond}})
	c := testClient(t)
	p0 := publish(t, c, h.URL, "a", `0`)
	resp := get(t, context.Background(), c, h.URL+"/v1/stream?channel=a")
	wantStreamHeaders(t, resp, "application/x-ndjson")
	r := bench.NewNDJSONReader(resp.Body)
	line, err := r.NextLine()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":"heartbeat","cursor":"a:` + p0.Epoch + `:1"}`; string(line) != want {
		t.Fatalf("first line %s, want %s", line, want)
	}
	p1 := publish(t, c, h.URL, "a", `{"text":"one"}`)
	p2 := publish(t, c, h.URL, "a", `[2]`)
	var got []string
	var beats []string
	for len(got) < 2 || len(beats) < 2 {
		line, err := r.NextLine()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(string(line), `{"type":"heartbeat"`) {
			if len(got) == 2 {
				beats = append(beats, string(line))
			}
			continue
		}
		got = append(got, string(line))
	}
	want := []string{
		`{"type":"message","channel":"a","epoch":"` + p1.Epoch + `","offset":2,"time":` + strconv.FormatInt(p1.Time, 10) + `,"data":{"text":"one"}}`,
		`{"type":"message","channel":"a","epoch":"` + p2.Epoch + `","offset":3,"time":` + strconv.FormatInt(p2.Time, 10) + `,"data":[2]}`,
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if want := `{"type":"heartbeat","cursor":"a:` + p0.Epoch + `:3"}`; beats[0] != want {
		t.Errorf("heartbeat %s, want %s", beats[0], want)
	}
	resp.Body.Close()
}

func TestStreamResumeFromCursor(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	c := testClient(t)
	var ep string
	for i := 1; i <= 5; i++ {
		ep = publish(t, c, h.URL, "a", numbered(i)).Epoch
	}
	resp := get(t, context.Background(), c, h.URL+"/v1/stream?channel=a&cursor=a:"+ep+":2")
	wantStreamHeaders(t, resp, "application/x-ndjson")
	r := bench.NewNDJSONReader(resp.Body)
	tr, _ := bench.NewTracker("a:" + ep + ":2")
	for tr.Cursor["a"].Offset < 5 {
		f, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == "heartbeat" {
			if f.Cursor != "a:"+ep+":2" {
				t.Errorf("starting cursor %s", f.Cursor)
			}
			continue
		}
		if err := tr.Apply(f); err != nil {
			t.Fatal(err)
		}
	}
	resp.Body.Close()
}

// TestStreamBadInput: every malformed request is a clear 400 before any
// stream starts, on each subscribing transport.
func TestStreamBadInput(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, &hubtest.Options{Hub: hub.Config{MaxChannels: 3}})
	c := testClient(t)
	long := strings.Repeat("x", 129)
	cases := []struct {
		name, query, lastEventID string
		code                     msg.Code
		paths                    string // which of s(se) t(stream) p(oll)
	}{
		{"no channel", "", "", msg.CodeBadRequest, "stp"},
		{"invalid channel", "channel=a%20b", "", msg.CodeInvalidChannel, "stp"},
		{"empty channel", "channel=", "", msg.CodeInvalidChannel, "stp"},
		{"long channel", "channel=" + long, "", msg.CodeInvalidChannel, "stp"},
		{"duplicated channel", "channel=a&channel=a", "", msg.CodeInvalidChannel, "stp"},
		{"too many channels", "channel=a&channel=b&channel=c&channel=d", "", msg.CodeBadRequest, "stp"},
		{"malformed cursor", "channel=a&cursor=a:1", "", msg.CodeInvalidCursor, "stp"},
		{"cursor offset", "channel=a&cursor=a:e:-1", "", msg.CodeInvalidCursor, "stp"},
		{"cursor epoch", "channel=a&cursor=a:E!:1", "", msg.CodeInvalidCursor, "stp"},
		{"cursor twice", "channel=a&cursor=a::1,a::2", "", msg.CodeInvalidCursor, "stp"},
		{"cursor other channel", "channel=a&cursor=b::1", "", msg.CodeInvalidCursor, "stp"},
		{"malformed Last-Event-ID", "channel=a&cursor=a::1", "garbage", msg.CodeInvalidCursor, "s"},
		{"Last-Event-ID other channel", "channel=a", "b::4", msg.CodeInvalidCursor, "s"},
		{"timeout too long", "channel=a&timeout=61s", "", msg.CodeBadRequest, "p"},
		{"timeout seconds too long", "channel=a&timeout=60.5", "", msg.CodeBadRequest, "p"},
		{"timeout negative", "channel=a&timeout=-1s", "", msg.CodeBadRequest, "p"},
		{"timeout garbage", "channel=a&timeout=soon", "", msg.CodeBadRequest, "p"},
		{"timeout empty", "channel=a&timeout=", "", msg.CodeBadRequest, "p"},
		{"timeout NaN", "channel=a&timeout=NaN", "", msg.CodeBadRequest, "p"},
		{"timeout huge", "channel=a&timeout=" + strings.Repeat("9", 40), "", msg.CodeBadRequest, "p"},
	}
	paths := map[byte]string{'s': "/v1/sse", 't': "/v1/stream", 'p': "/v1/poll"}
	for _, tc := range cases {
		for i := 0; i < len(tc.paths); i++ {
			path := paths[tc.paths[i]]
			t.Run(tc.name+path, func(t *testing.T) {
				var hdr []string
				if tc.lastEventID != "" {
					hdr = []string{"Last-Event-ID", tc.lastEventID}
				}
				resp := get(t, context.Background(), c, h.URL+path+"?"+tc.query, hdr...)
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("status %s, want 400", resp.Status)
				}
				code, message := errorCode(t, resp)
				if code != tc.code || message == "" {
					t.Fatalf("code %s (%q), want %s", code, message, tc.code)
				}
			})
		}
	}
	if n := h.Hub.Stats().Sessions; n != 0 {
		t.Errorf("%d sessions left open by refused requests", n)
	}
	for _, timeout := range []string{"0", "0.01", "10ms", "0s"} {
		resp := get(t, context.Background(), c, h.URL+"/v1/poll?channel=a&timeout="+timeout)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("timeout=%s: %s", timeout, resp.Status)
		}
		resp.Body.Close()
	}
}

// TestStreamNeverReadingClientIsCut: a client that connects and never reads
// costs the hub a bounded queue and is cut (write deadline or queue bound),
// whatever the publisher keeps sending.
func TestStreamNeverReadingClientIsCut(t *testing.T) {
	for _, path := range []string{"/v1/sse", "/v1/stream"} {
		t.Run(path, func(t *testing.T) {
			hubtest.CheckLeaks(t)
			h := hubtest.Start(t, &hubtest.Options{
				Hub:    hub.Config{QueueMessages: 64, QueueBytes: 256 << 10},
				Server: server.Config{WriteTimeout: 200 * time.Millisecond},
			})
			c := testClient(t)
			conn, err := net.Dial("tcp", h.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.(*net.TCPConn).SetReadBuffer(4096)
			fmt.Fprintf(conn, "GET %s?channel=a HTTP/1.1\r\nHost: %s\r\n\r\n", path, h.Addr)
			waitSubscribers(t, h, "a", 1)
			data := `"` + strings.Repeat("x", 8000) + `"`
			cut := false
			for i := 0; i < 20000 && !cut; i++ {
				publish(t, c, h.URL, "a", data)
				cut = h.Hub.Stats().Sessions == 0
			}
			if !cut {
				t.Fatalf("a client that never reads was not cut after 20000 messages of 8 KB")
			}
			// The handler is gone with its session (CheckLeaks sees no
			// goroutine left); only what the kernels buffered remains.
			if st := h.Hub.Stats(); st.SlowCuts == 0 {
				t.Logf("cut by the write deadline (no queue overflow)")
			}
		})
	}
}

// TestStreamHTTP10: an HTTP/1.0 client gets the stream unchunked, ended by
// the connection's close.
func TestStreamHTTP10(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	c := testClient(t)
	conn, err := net.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/stream?channel=old HTTP/1.0\r\nHost: %s\r\n\r\n", h.Addr)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ProtoMinor != 0 || len(resp.TransferEncoding) != 0 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("got %s %s %v %v", resp.Proto, resp.Status, resp.TransferEncoding, resp.Header)
	}
	r := bench.NewNDJSONReader(resp.Body)
	if f, err := r.Next(); err != nil || f.Type != "heartbeat" {
		t.Fatalf("first line: %+v %v", f, err)
	}
	p := publish(t, c, h.URL, "old", `"hi"`)
	if f, err := r.Next(); err != nil || f.Type != "message" || f.Offset != p.Offset {
		t.Fatalf("message: %+v %v", f, err)
	}
}
