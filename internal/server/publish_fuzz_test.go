package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/msg"
)

// FuzzPublishFraming: any body POSTed to the publish endpoint is either
// refused with a JSON 400 invalid_json or 413, or stored as data that is
// valid JSON and valid UTF-8 and comes back intact through every
// transport's framing: an SSE block, an NDJSON line, a long-poll answer and
// a WebSocket text frame. The same data sent in a WebSocket publish command
// is accepted or refused alike: both ways in share one validation.
func FuzzPublishFraming(f *testing.F) {
	for _, s := range []string{
		`{"text":"hi"}`, "{\"a\":\"\xff\xfe\"}", `{"a":"\ud800"}`, `"\ud83d\ude00"`,
		`[1, {"b": null}, "x\ny"]`, "\"line\u2028sep\"", `{oops`, `"\u0000"`,
	} {
		f.Add([]byte(s))
	}
	// On memory even with DUPLEX_TEST_ENGINE=redis: this fuzzes the HTTP
	// framing and the data check, run in-process at thousands of inputs a
	// second; the Redis read-back of stored data is checked by
	// internal/engine/redis (msg.CheckStored).
	hb, err := hub.New(context.Background(), hub.Config{Engine: memory.New(memory.Config{}), MaxMessage: 1024})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { hb.Shutdown(context.Background()) })
	srv, err := New(Config{Hub: hb})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest("POST", "/v1/channels/fuzz/messages", bytes.NewReader(body)))
		httpOK := w.Code == http.StatusCreated
		if !httpOK {
			var eb msg.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Error == nil {
				t.Fatalf("%q: %d with a body that is not a JSON error: %q", body, w.Code, w.Body)
			}
			if c := eb.Error.Code; c.HTTPStatus() != w.Code || (c != msg.CodeInvalidJSON && c != msg.CodeTooLarge) {
				t.Fatalf("%q: %d %s", body, w.Code, c)
			}
		}
		wsOK := false
		frame := append(append([]byte(`{"id":1,"type":"publish","channel":"fuzz","data":`), body...), '}')
		if utf8.Valid(frame) { // otherwise the WebSocket layer closes with 1007 first
			if cmd, err := msg.ParseCommand(frame); err == nil && bytes.Equal(cmd.Data, bytes.TrimSpace(body)) {
				_, perr := hb.Publish(context.Background(), "fuzz", cmd.Data)
				wsOK = perr == nil
				if wsOK != httpOK {
					t.Fatalf("%q: HTTP publish accepted=%v, WebSocket publish accepted=%v (%v)", body, httpOK, wsOK, perr)
				}
			}
		}
		if !httpOK {
			return
		}
		var pub msg.Published
		if err := json.Unmarshal(w.Body.Bytes(), &pub); err != nil {
			t.Fatal(err)
		}
		_, pubs, err := hb.History(context.Background(), "fuzz", pub.Offset-1, 1)
		if err != nil || len(pubs) != 1 || pubs[0].Offset != pub.Offset {
			t.Fatalf("history of offset %d: %v, %v", pub.Offset, pubs, err)
		}
		p := pubs[0]
		if !json.Valid(p.Data) || !utf8.Valid(p.JSON) {
			t.Fatalf("%q stored as %q: not valid JSON and UTF-8", body, p.JSON)
		}
		checkFramings(t, p)
	})
}

// checkFramings frames p as every transport does and reads each back,
// failing unless the envelope's data survives byte for byte.
func checkFramings(t *testing.T, p *hub.Publication) {
	t.Helper()
	it := hub.Item{Pub: p}
	cur := msg.Cursor{}
	names := []string{p.Channel}
	it.Advance(cur)
	want := p.Data

	// SSE: one data: line.
	sc := bufio.NewScanner(bytes.NewReader(sseFramer{}.item(nil, it, cur, names)))
	sc.Buffer(nil, 1<<20)
	var data []string
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, line)
		}
	}
	if len(data) != 1 {
		t.Fatalf("SSE block for %q has %d data lines", p.JSON, len(data))
	}
	checkEnvelope(t, "SSE", []byte(data[0]), want)

	// NDJSON: one line.
	line := ndjsonFramer{}.item(nil, it, cur, names)
	if bytes.IndexByte(line, '\n') != len(line)-1 {
		t.Fatalf("NDJSON line for %q is not one line", p.JSON)
	}
	checkEnvelope(t, "NDJSON", line, want)

	// Long poll: one JSON document.
	var poll msg.PollResponse
	if err := json.Unmarshal(appendPollBody(nil, []hub.Item{it}, msg.Cursor{}), &poll); err != nil || len(poll.Messages) != 1 {
		t.Fatalf("poll answer for %q: %v", p.JSON, err)
	}
	if !bytes.Equal(poll.Messages[0].Data, want) {
		t.Fatalf("poll: data %q, want %q", poll.Messages[0].Data, want)
	}

	// WebSocket: one final text frame whose payload is valid UTF-8.
	fr := appendWSFrame(nil, wsOpText, p.JSON)
	if fr[0] != 0x80|wsOpText {
		t.Fatalf("frame starts %#x", fr[0])
	}
	n, hdr := uint64(fr[1]&0x7f), 2
	switch n {
	case 126:
		n, hdr = uint64(binary.BigEndian.Uint16(fr[2:])), 4
	case 127:
		n, hdr = binary.BigEndian.Uint64(fr[2:]), 10
	}
	payload := fr[hdr:]
	if uint64(len(payload)) != n || !utf8.Valid(payload) {
		t.Fatalf("text frame for %q: length %d of %d, valid UTF-8 %v", p.JSON, n, len(payload), utf8.Valid(payload))
	}
	checkEnvelope(t, "WebSocket", payload, want)
}

func checkEnvelope(t *testing.T, transport string, b, wantData []byte) {
	t.Helper()
	var e msg.Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s: %q does not decode: %v", transport, b, err)
	}
	if e.Type != msg.TypeMessage || !bytes.Equal(e.Data, wantData) {
		t.Fatalf("%s: envelope %q, want data %q", transport, b, wantData)
	}
}
