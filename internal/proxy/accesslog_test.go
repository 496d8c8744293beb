package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"reflect"
	"testing"
	"time"
)

// TestAccessLineMatchesSlog: the fast path writes, field for field, what
// slog's JSONHandler writes for the same tunnel (time and duration aside,
// which are read at different instants).
func TestAccessLineMatchesSlog(t *testing.T) {
	client := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242}
	for _, l := range []tunnelLog{
		{proto: "connect", client: client, target: "example.com:443", addr: "93.184.216.34:443", up: 79, down: 3034, outcome: outcomeOK},
		{proto: "http", client: client, target: "h\"o\\st\n\x01\xff\u2028:80", user: "al\tice", status: 200, outcome: outcomeOK},
		{proto: "socks5", client: nil, target: "10.0.0.1:80", outcome: outcomeForbidden, err: errors.New("forbidden: 10.0.0.1: destination not allowed")},
	} {
		l.start = time.Now().Add(-1500 * time.Microsecond)
		var fast, slow bytes.Buffer
		fs := &Server{cfg: Config{AccessLog: &fast}}
		fs.metrics.init()
		ss := &Server{cfg: Config{Logger: slog.New(slog.NewJSONHandler(&slow, nil))}}
		ss.metrics.init()
		l2 := l
		fs.logTunnel(&l)
		ss.logTunnel(&l2)
		var a, b map[string]any
		if err := json.Unmarshal(fast.Bytes(), &a); err != nil {
			t.Fatalf("fast line %q: %v", fast.Bytes(), err)
		}
		json.Unmarshal(slow.Bytes(), &b)
		for _, m := range []map[string]any{a, b} {
			if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
				t.Fatalf("time: %v", err)
			}
			if d, _ := m["duration_ms"].(float64); d < 1.5 {
				t.Fatalf("duration_ms %v", m["duration_ms"])
			}
			delete(m, "time")
			delete(m, "duration_ms")
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("fast %v\nslog %v", a, b)
		}
		if bytes.Count(fast.Bytes(), []byte("\n")) != 1 || !bytes.HasSuffix(fast.Bytes(), []byte("}\n")) {
			t.Errorf("not one line: %q", fast.Bytes())
		}
	}
}

// FuzzAppendJSONString: any string becomes valid JSON that decodes to what
// encoding/json makes of it (invalid UTF-8 replaced alike).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\s", "\x00\x1f\x7f", "\xff\xfe", "é😀", "\u2028\u2029", "a\nb\rc\td"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendJSONString(nil, s)
		var dec string
		if err := json.Unmarshal(got, &dec); err != nil {
			t.Fatalf("%q -> %s: %v", s, got, err)
		}
		want, _ := json.Marshal(s)
		var wantDec string
		json.Unmarshal(want, &wantDec)
		if dec != wantDec {
			t.Fatalf("%q -> %q, encoding/json %q", s, dec, wantDec)
		}
	})
}
