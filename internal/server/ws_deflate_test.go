package server_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/server"
)

// rawWS is a WebSocket client written out by hand, to see the frames'
// RSV1 bits and to send frames no library would.
type rawWS struct {
	c  net.Conn
	br *bufio.Reader
}

// rawWSDial opens path of h offering extensions (none if empty) and
// returns the handshake's answer.
func rawWSDial(t *testing.T, h *hubtest.Hub, path, extensions string) (*rawWS, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", h.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: " + h.Addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if extensions != "" {
		req += "Sec-WebSocket-Extensions: " + extensions + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	// A backstop against a hub that never answers: hitting it fails.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake answered %s, want 101", resp.Status)
	}
	return &rawWS{c: c, br: br}, resp
}

// write sends one final, masked frame; b0 is its first byte but FIN.
func (r *rawWS) write(t *testing.T, b0 byte, payload []byte) {
	t.Helper()
	f := []byte{0x80 | b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xffff:
		f = binary.BigEndian.AppendUint16(append(f, 0x80|126), uint16(n))
	default:
		f = binary.BigEndian.AppendUint64(append(f, 0x80|127), uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	f = append(f, mask[:]...)
	for i, b := range payload {
		f = append(f, b^mask[i%4])
	}
	if _, err := r.c.Write(f); err != nil {
		t.Fatalf("write frame: %v", err)
	}
}

// read returns the next frame's first byte and payload (server frames are
// neither masked nor, from duplex, fragmented).
func (r *rawWS) read(t *testing.T) (byte, []byte) {
	t.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(r.br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(r.br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.br, p); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	return hdr[0], p
}

// inflate undoes permessage-deflate on one message.
func inflate(t *testing.T, p []byte) []byte {
	t.Helper()
	b, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff}))))
	if err != io.ErrUnexpectedEOF && err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return b
}

// deflate compresses p as a client would (no context kept).
func deflate(t *testing.T, p []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w, _ := flate.NewWriter(&out, flate.BestSpeed)
	w.Write(p)
	w.Flush()
	return bytes.TrimSuffix(out.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// TestWSDeflateNegotiation checks the answer to each offer, over a real
// handshake: the first offer duplex can honour is accepted, always with
// server_ and client_no_context_takeover; a malformed one is declined,
// never fatal.
func TestWSDeflateNegotiation(t *testing.T) {
	h := hubtest.Start(t, nil)
	const base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	for _, tc := range []struct{ offer, want string }{
		{"", ""},
		{"permessage-deflate", base},
		{"permessage-deflate; client_max_window_bits", base},
		{"permessage-deflate; client_max_window_bits=10", base},
		{`permessage-deflate; client_max_window_bits="10"`, base},
		{"permessage-deflate; server_no_context_takeover", base},
		{"permessage-deflate; client_no_context_takeover", base},
		{"permessage-deflate; server_max_window_bits=15", base},
		{"permessage-deflate; server_max_window_bits=9", base + "; server_max_window_bits=9"},
		{"PERMESSAGE-DEFLATE ; Client_No_Context_Takeover", base},
		{"permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=8",
			base + "; server_max_window_bits=8"},
		// The first acceptable offer wins; unknown extensions are passed over.
		{"x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover", base},
		{"permessage-deflate; server_max_window_bits=7, permessage-deflate", base},
		{"permessage-deflate; mystery, permessage-deflate; server_max_window_bits=12", base + "; server_max_window_bits=12"},
		// Declined: malformed or unknown parameters.
		{"permessage-deflate; server_max_window_bits", ""},
		{"permessage-deflate; server_max_window_bits=16", ""},
		{"permessage-deflate; server_max_window_bits=09", ""},
		{"permessage-deflate; client_max_window_bits=abc", ""},
		{"permessage-deflate; client_max_window_bits=7", ""},
		{"permessage-deflate; server_no_context_takeover=1", ""},
		{"permessage-deflate; client_no_context_takeover; client_no_context_takeover", ""},
		{"permessage-deflate; mystery", ""},
		{"permessage-deflate;", ""},
		{`permessage-deflate; client_max_window_bits="10`, ""},
		{"permessage-deflate; ; ", ""},
		{"x-webkit-deflate-frame", ""},
	} {
		for _, path := range []string{"/v1/ws", "/v1/echo"} {
			_, resp := rawWSDial(t, h, path, tc.offer)
			if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != tc.want {
				t.Errorf("%s offer %q: answered %q, want %q", path, tc.offer, got, tc.want)
			}
		}
	}

	off := hubtest.Start(t, &hubtest.Options{Server: server.Config{NoWSCompression: true}})
	if _, resp := rawWSDial(t, off, "/v1/ws", "permessage-deflate"); resp.Header.Get("Sec-WebSocket-Extensions") != "" {
		t.Errorf("NoWSCompression: answered %q", resp.Header.Get("Sec-WebSocket-Extensions"))
	}
}

// metric reads one counter of h's /metrics.
func metric(t *testing.T, h *hubtest.Hub, name string) float64 {
	t.Helper()
	resp, err := http.Get(h.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// TestWSDeflateOncePerPublication fans publications out to subscribers
// that negotiated compression and to one that did not: each publication
// is compressed once, whatever the number of subscribers; small ones and
// the plain subscriber's go uncompressed; every subscriber reads what was
// published.
func TestWSDeflateOncePerPublication(t *testing.T) {
	hubtest.CheckLeaks(t)
	h := hubtest.Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const n = 6
	var libs []*websocket.Conn
	for range n {
		c, _, err := websocket.Dial(ctx, "ws://"+h.Addr+"/v1/ws", &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		wsSend(t, c, `{"id":1,"type":"subscribe","channel":"z"}`)
		if f := wsRead(t, c); f.Type != "ok" {
			t.Fatalf("subscribe: %+v", f)
		}
		libs = append(libs, c)
	}
	raw, resp := rawWSDial(t, h, "/v1/ws", "permessage-deflate; client_max_window_bits")
	if resp.Header.Get("Sec-WebSocket-Extensions") == "" {
		t.Fatal("compression not negotiated")
	}
	plain, _ := rawWSDial(t, h, "/v1/ws", "")
	for _, r := range []*rawWS{raw, plain} {
		r.write(t, 0x1, []byte(`{"id":1,"type":"subscribe","channel":"z"}`))
		if b0, p := r.read(t); b0 != 0x81 || !bytes.Contains(p, []byte(`"ok"`)) {
			t.Fatalf("subscribe reply %#x %s", b0, p)
		}
	}

	big := `{"text":"` + strings.Repeat("the quick brown fox ", 50) + `"}`
	datas := []string{big, `{"small":true}`, `{"n":2,` + big[1:], `{"n":3,` + big[1:]}
	var pubs []*hub.Publication
	for _, d := range datas {
		p, err := h.Hub.Publish(ctx, "z", []byte(d))
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, p)
	}
	for _, c := range libs {
		for _, p := range pubs {
			_, b, err := c.Read(ctx)
			if err != nil || !bytes.Equal(b, p.JSON) {
				t.Fatalf("subscriber read %.60s, %v; want %.60s", b, err, p.JSON)
			}
		}
	}
	for _, p := range pubs {
		b0, payload := raw.read(t)
		compressed := len(p.JSON) >= 256
		if got := b0&0x40 != 0; got != compressed {
			t.Fatalf("publication of %d bytes: RSV1 %v, want %v", len(p.JSON), got, compressed)
		}
		if compressed {
			if len(payload) >= len(p.JSON) {
				t.Errorf("compressed frame of %d bytes for %d", len(payload), len(p.JSON))
			}
			payload = inflate(t, payload)
		}
		if !bytes.Equal(payload, p.JSON) {
			t.Fatalf("raw subscriber read %.60s, want %.60s", payload, p.JSON)
		}
		if b0, payload := plain.read(t); b0 != 0x81 || !bytes.Equal(payload, p.JSON) {
			t.Fatalf("plain subscriber read %#x %.60s", b0, payload)
		}
	}
	if got := metric(t, h, "duplex_ws_compressions_total"); got != 3 {
		t.Errorf("%v compressions for 3 large publications to %d subscribers, want 3", got, n+1)
	}
}

// TestWSDeflateWindowBits checks that a connection that asked for a small
// server window gets compressed only what fits it: a message compressed on
// its own refers back no further than its length.
func TestWSDeflateWindowBits(t *testing.T) {
	h := hubtest.Start(t, nil)
	r, _ := rawWSDial(t, h, "/v1/echo", "permessage-deflate; server_max_window_bits=9")
	for _, n := range []int{300, 512, 513, 4000} {
		m := bytes.Repeat([]byte("abcdefgh"), n/8+1)[:n]
		r.write(t, 0x1, m)
		b0, p := r.read(t)
		if got, want := b0&0x40 != 0, n <= 512; got != want {
			t.Errorf("%d bytes to a 2^9 window: RSV1 %v, want %v", n, got, want)
		}
		if b0&0x40 != 0 {
			p = inflate(t, p)
		}
		if !bytes.Equal(p, m) {
			t.Fatalf("echo of %d bytes: %d bytes back", n, len(p))
		}
	}
}

// TestWSDeflateClientFrames sends compressed frames to the echo from
// clients that offered context takeover and that did not: both are told
// client_no_context_takeover and compress each message on its own.
func TestWSDeflateClientFrames(t *testing.T) {
	h := hubtest.Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, mode := range []websocket.CompressionMode{websocket.CompressionContextTakeover, websocket.CompressionNoContextTakeover} {
		c, _, err := websocket.Dial(ctx, "ws://"+h.Addr+"/v1/echo", &websocket.DialOptions{CompressionMode: mode, CompressionThreshold: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		c.SetReadLimit(-1)
		for i := range 5 {
			m := []byte(fmt.Sprintf(`{"i":%d,"s":"%s"}`, i, strings.Repeat("héllo ", 100*i)))
			if err := c.Write(ctx, websocket.MessageText, m); err != nil {
				t.Fatal(err)
			}
			_, b, err := c.Read(ctx)
			if err != nil || !bytes.Equal(b, m) {
				t.Fatalf("mode %v echo %d: %.40s %v", mode, i, b, err)
			}
		}
	}
	// A compressed frame with invalid UTF-8 inside is refused as any is.
	r, _ := rawWSDial(t, h, "/v1/echo", "permessage-deflate")
	r.write(t, 0x41, deflate(t, []byte("ok\xc0\xaf")))
	if b0, p := r.read(t); b0 != 0x88 || binary.BigEndian.Uint16(p) != 1007 {
		t.Fatalf("invalid UTF-8, compressed: frame %#x %q, want close 1007", b0, p)
	}
}

// TestWSDeflateBomb sends a frame that inflates to 256 MiB to a hub whose
// limit is a few KiB: the hub closes with 1009 having inflated about its
// limit, not the bomb.
func TestWSDeflateBomb(t *testing.T) {
	h := hubtest.Start(t, &hubtest.Options{Hub: hub.Config{MaxMessage: 1000}})
	var z bytes.Buffer
	w, _ := flate.NewWriter(&z, flate.BestCompression)
	zeros := make([]byte, 64<<10)
	for range 4096 { // 256 MiB
		w.Write(zeros)
	}
	w.Flush()
	bomb := bytes.TrimSuffix(z.Bytes(), []byte{0, 0, 0xff, 0xff})

	for _, path := range []string{"/v1/echo", "/v1/ws"} {
		r, _ := rawWSDial(t, h, path, "permessage-deflate")
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r.write(t, 0x41, bomb)
		b0, p := r.read(t)
		runtime.ReadMemStats(&after)
		if b0 != 0x88 || len(p) < 2 || binary.BigEndian.Uint16(p) != 1009 {
			t.Fatalf("%s: bomb of %d bytes: frame %#x of %d bytes (%.40q), want close 1009", path, len(bomb), b0, len(p), p)
		}
		// The frame itself (masked by the test, read by the hub) is a
		// few hundred KiB; the bomb inflated whole would be 256 MiB.
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
			t.Errorf("%s: %d MiB allocated while refusing the bomb", path, grew>>20)
		}
	}

	// Random bytes do not inflate: the connection fails, it does not hang.
	r, _ := rawWSDial(t, h, "/v1/echo", "permessage-deflate")
	junk := make([]byte, 300)
	rand.Read(junk)
	r.write(t, 0x41, junk)
	if b0, _ := r.read(t); b0 != 0x88 {
		t.Fatalf("junk deflate stream: frame %#x, want a close", b0)
	}
}
