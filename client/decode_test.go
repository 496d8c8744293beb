package client

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// Real bytes the hub sends, as seeds.
const (
	sseSeed = "retry: 1000\nid: chat:k3v9x2ab1c:0\n\n" +
		"id: chat:k3v9x2ab1c:1\nevent: message\ndata: {\"type\":\"message\",\"channel\":\"chat\",\"epoch\":\"k3v9x2ab1c\",\"offset\":1,\"time\":1763980000123,\"data\":{\"text\":\"hi\"}}\n\n" +
		": heartbeat\n\n" +
		"id: chat:k3v9x2ab1c:56\nevent: gap\ndata: {\"type\":\"gap\",\"channel\":\"chat\",\"epoch\":\"k3v9x2ab1c\",\"next\":57}\n\n"
	ndjsonSeed = "{\"type\":\"heartbeat\",\"cursor\":\"chat:k3v9x2ab1c:0\"}\n" +
		"{\"type\":\"message\",\"channel\":\"chat\",\"epoch\":\"k3v9x2ab1c\",\"offset\":1,\"time\":1763980000123,\"data\":{\"text\":\"hi\"}}\n" +
		"{\"type\":\"gap\",\"channel\":\"chat\",\"epoch\":\"k3v9x2ab1c\",\"next\":57}\n"
	pollSeed = "{\"messages\":[{\"type\":\"message\",\"channel\":\"chat\",\"epoch\":\"k3v9x2ab1c\",\"offset\":57,\"time\":1763980000123,\"data\":[1,2]}]," +
		"\"gaps\":[{\"type\":\"gap\",\"channel\":\"chat\",\"epoch\":\"k3v9x2ab1c\",\"next\":57}],\"cursor\":\"chat:k3v9x2ab1c:57\"}"
)

func sseAll(in io.Reader, max int) ([]sseEvent, error) {
	d := newSSEDecoder(in, max)
	var out []sseEvent
	for {
		ev, err := d.Next()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, ev)
	}
}

func TestSSEDecoder(t *testing.T) {
	evs, err := sseAll(strings.NewReader(sseSeed), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("%d events: %+v", len(evs), evs)
	}
	if evs[0].HasData || !evs[0].IDSet || evs[0].ID != "chat:k3v9x2ab1c:0" || evs[0].Retry != 1000 {
		t.Fatalf("start block %+v", evs[0])
	}
	if evs[1].Type != "message" || !bytes.HasPrefix(evs[1].Data, []byte(`{"type":"message"`)) || evs[1].ID != "chat:k3v9x2ab1c:1" {
		t.Fatalf("message %+v", evs[1])
	}
	if evs[2].Type != "gap" || evs[2].ID != "chat:k3v9x2ab1c:56" {
		t.Fatalf("gap %+v", evs[2])
	}

	// CR, CRLF and LF line ends; multi-line data; a field with no colon;
	// no space after the colon; unknown fields; the id persists.
	evs, err = sseAll(strings.NewReader("data:a\r\ndata: b\rdata\n\r\nfoo: bar\nid: x\n\n\n:c\ndata: z\n\n"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || string(evs[0].Data) != "a\nb\n" || evs[1].HasData || evs[1].ID != "x" || string(evs[2].Data) != "z" || evs[2].ID != "x" || evs[2].IDSet {
		t.Fatalf("%+v", evs)
	}

	// One byte at a time makes no difference.
	evs2, err := sseAll(iotest.OneByteReader(strings.NewReader(sseSeed)), 1<<20)
	if err != nil || len(evs2) != 3 {
		t.Fatalf("%v %+v", err, evs2)
	}

	for _, bad := range []string{"data: x", "data: x\n", "id: 1\r"} {
		if _, err := sseAll(strings.NewReader(bad), 1<<20); !errors.Is(err, ErrProtocol) {
			t.Errorf("%q: %v, want a protocol error", bad, err)
		}
	}
	if _, err := sseAll(strings.NewReader("data: "+strings.Repeat("x", 100)+"\n\n"), 50); !errors.Is(err, ErrProtocol) {
		t.Errorf("long line: %v", err)
	}
	if _, err := sseAll(strings.NewReader(strings.Repeat("data: xxxxxxxxxx\n", 10)+"\n"), 50); !errors.Is(err, ErrProtocol) {
		t.Errorf("long data: %v", err)
	}
}

func FuzzSSEDecoder(f *testing.F) {
	f.Add([]byte(sseSeed))
	f.Add([]byte("data:a\r\ndata: b\rdata\n\r\nid: x\n\n"))
	f.Add([]byte(": only a comment\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 256
		evs, err := sseAll(bytes.NewReader(b), max)
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("error %v is not a protocol error", err)
		}
		for _, ev := range evs {
			if len(ev.Data) > max {
				t.Fatalf("data of %d bytes past the limit %d", len(ev.Data), max)
			}
		}
		// Reading byte by byte decodes the same.
		evs2, err2 := sseAll(iotest.OneByteReader(bytes.NewReader(b)), max)
		if (err == nil) != (err2 == nil) || len(evs) != len(evs2) {
			t.Fatalf("byte-by-byte differs: %v/%d vs %v/%d", err, len(evs), err2, len(evs2))
		}
	})
}

func lines(in io.Reader, max int) ([]string, error) {
	d := newLineDecoder(in, max)
	var out []string
	for {
		l, err := d.Next()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, string(l))
	}
}

func TestLineDecoder(t *testing.T) {
	got, err := lines(strings.NewReader("a\r\n\n  \nb\n"+strings.Repeat("c", 40000)+"\n"), 1<<20)
	if err != nil || len(got) != 3 || got[0] != "a" || got[1] != "b" || len(got[2]) != 40000 {
		t.Fatalf("%v %q", err, got)
	}
	if _, err := lines(strings.NewReader("a\nb"), 100); !errors.Is(err, ErrProtocol) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := lines(strings.NewReader(strings.Repeat("c", 40000)+"\n"), 1000); !errors.Is(err, ErrProtocol) {
		t.Fatalf("long: %v", err)
	}
	for _, l := range []string{"garbage", "[1]", "null", `{"type":""}`, `{"type":1}`} {
		if _, err := decodeFrame([]byte(l)); !errors.Is(err, ErrProtocol) {
			t.Errorf("decodeFrame(%q): %v", l, err)
		}
	}
}

func FuzzLineDecoder(f *testing.F) {
	f.Add([]byte(ndjsonSeed))
	f.Add([]byte("a\r\n\n  \nb"))
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 4096
		ls, err := lines(bytes.NewReader(b), max)
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Fatalf("error %v is not a protocol error", err)
		}
		for _, l := range ls {
			if len(l) > max {
				t.Fatalf("line of %d bytes past the limit", len(l))
			}
			if strings.ContainsAny(l, "\n") {
				t.Fatalf("line %q holds a newline", l)
			}
			f, err := decodeFrame([]byte(l))
			if err != nil && !errors.Is(err, ErrProtocol) {
				t.Fatalf("decodeFrame error %v is not a protocol error", err)
			}
			if err == nil {
				if f.Type == "message" {
					checkEnvelope(f.envelope())
				}
			}
		}
	})
}

func TestDecodePoll(t *testing.T) {
	p, err := decodePoll([]byte(pollSeed))
	if err != nil || len(p.Messages) != 1 || len(p.Gaps) != 1 || p.Cursor != "chat:k3v9x2ab1c:57" {
		t.Fatalf("%v %+v", err, p)
	}
	if _, err := decodePoll([]byte(`{"messages":[],"gaps":[],"cursor":""}`)); err != nil {
		t.Fatalf("empty answer: %v", err)
	}
}

func FuzzDecodePoll(f *testing.F) {
	f.Add([]byte(pollSeed))
	f.Add([]byte(`{"messages":[],"gaps":[],"cursor":""}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePoll(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not a protocol error", err)
			}
			return
		}
		for i := range p.Messages {
			if checkEnvelope(&p.Messages[i]) != nil {
				t.Fatal("accepted a bad envelope")
			}
		}
		for i := range p.Gaps {
			if checkGap(&p.Gaps[i]) != nil {
				t.Fatal("accepted a bad gap")
			}
		}
	})
}
