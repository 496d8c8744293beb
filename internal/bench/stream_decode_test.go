package bench

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func readAllSSE(t testing.TB, in string, max int) ([]SSEEvent, string, error) {
	d := NewSSEReader(strings.NewReader(in))
	d.MaxLine = max
	var evs []SSEEvent
	for {
		ev, err := d.Next()
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return evs, d.LastEventID, err
		}
		evs = append(evs, ev)
		if len(evs) > len(in)+1 {
			t.Fatalf("more events than input bytes")
		}
	}
}

func TestSSEReader(t *testing.T) {
	t.Parallel()
	in := "\xEF\xBB\xBFretry: 1500\r\nid: a:e1:0\r\n\r\n" + // id only: no event, but the last event ID moves
		": heartbeat\n\n" +
		"id: a:e1:1\revent: message\rdata: {\"x\":\rdata:1}\r\r" +
		"data\n\n" + // a field with no colon: empty data
		"id\nevent: gap\ndata:  two spaces\n\n" +
		"id: bad\x00id\ndata: keeps id\n\n" +
		"retry: 1x\nbogus: field\ndata: last"
	evs, last, err := readAllSSE(t, in, 0)
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("err = %v, want io.ErrUnexpectedEOF for the unterminated last line", err)
	}
	want := []SSEEvent{
		{Comment: true, Data: []byte("heartbeat")},
		{Type: "message", ID: "a:e1:1", Data: []byte("{\"x\":\n1}")},
		{Type: "message", ID: "a:e1:1", Data: []byte("")},
		{Type: "gap", ID: "", Data: []byte(" two spaces")},
		{Type: "message", ID: "", Data: []byte("keeps id")},
	}
	if !reflect.DeepEqual(evs, want) {
		t.Fatalf("events:\n got %+v\nwant %+v", evs, want)
	}
	if last != "" {
		t.Errorf("LastEventID = %q, want empty (reset by a bare id field)", last)
	}
	d := NewSSEReader(strings.NewReader("retry: 1500\nid: a::3\n\n"))
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("Next = %v, want io.EOF", err)
	}
	if d.LastEventID != "a::3" || d.Retry != 1500*time.Millisecond {
		t.Errorf("LastEventID %q Retry %v, want a::3 and 1.5s", d.LastEventID, d.Retry)
	}
}

func TestSSEReaderBounds(t *testing.T) {
	t.Parallel()
	_, _, err := readAllSSE(t, "data: "+strings.Repeat("x", 100)+"\n\n", 64)
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("long line: err = %v, want ErrLineTooLong", err)
	}
	_, _, err = readAllSSE(t, strings.Repeat("data: 0123456789\n", 10)+"\n", 64)
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("long event: err = %v, want ErrLineTooLong", err)
	}
}

func TestNDJSONReader(t *testing.T) {
	t.Parallel()
	in := `{"type":"heartbeat","cursor":"a:e1:0"}` + "\n" +
		`{"type":"message","channel":"a","epoch":"e1","offset":1,"time":5,"data":{"n":1}}` + "\r\n" +
		`{"type":"gap","channel":"a","epoch":"e1","next":9}` + "\n" +
		`{"type":"nope"}` + "\n" +
		`{"type":"message"`
	d := NewNDJSONReader(strings.NewReader(in))
	tr, _ := NewTracker("")
	for i := 0; i < 3; i++ {
		f, err := d.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if err := tr.Apply(f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if got := tr.String(); got != "a:e1:8" {
		t.Errorf("cursor %q, want a:e1:8", got)
	}
	if _, err := d.Next(); err == nil {
		t.Errorf("unknown type: no error")
	}
	if _, err := d.Next(); err != io.ErrUnexpectedEOF {
		t.Errorf("cut line: %v, want io.ErrUnexpectedEOF", err)
	}
	d = NewNDJSONReader(strings.NewReader(strings.Repeat("x", 100) + "\n"))
	d.MaxLine = 64
	if _, err := d.NextLine(); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("long line: %v, want ErrLineTooLong", err)
	}
}

func TestTrackerRefusesLossAndDuplicate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cursor string
		f      Frame
	}{
		{"a:e1:5", Frame{Type: "message", Channel: "a", Epoch: "e1", Offset: 7}},
		{"a:e1:5", Frame{Type: "message", Channel: "a", Epoch: "e1", Offset: 5}},
		{"a:e1:5", Frame{Type: "message", Channel: "a", Epoch: "e2", Offset: 6}},
	} {
		tr, err := NewTracker(c.cursor)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Apply(c.f); err == nil {
			t.Errorf("cursor %s, frame %+v: no error", c.cursor, c.f)
		}
	}
}

// FuzzSSEReader: no panic, bounded output, and CRLF line ends decode like LF.
func FuzzSSEReader(f *testing.F) {
	f.Add([]byte("retry: 1000\nid: a:k3v9x2:0\n\nid: a:k3v9x2:1\nevent: message\ndata: {\"type\":\"message\"}\n\n: heartbeat\n\n"))
	f.Add([]byte("data\r\n\r\n:\r\r\nid\x00: x\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		evs, last, err := readAllSSE(t, string(in), 256)
		for _, ev := range evs {
			if len(ev.Data) > 256 {
				t.Fatalf("event data of %d bytes over MaxLine", len(ev.Data))
			}
		}
		if bytes.IndexByte(in, '\r') >= 0 {
			return
		}
		crlf := bytes.ReplaceAll(in, []byte("\n"), []byte("\r\n"))
		evs2, last2, err2 := readAllSSE(t, string(crlf), 256)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("LF err %v, CRLF err %v", err, err2)
		}
		if err == nil && (!reflect.DeepEqual(evs, evs2) || last != last2) {
			t.Fatalf("LF and CRLF decode differently:\n%+v\n%+v", evs, evs2)
		}
	})
}

// FuzzNDJSONReader: no panic, lines bounded, every accepted frame valid.
func FuzzNDJSONReader(f *testing.F) {
	f.Add([]byte(`{"type":"heartbeat","cursor":"a:k3v9x2:0"}` + "\n" +
		`{"type":"message","channel":"a","epoch":"k3v9x2","offset":1,"time":1,"data":{"x":1}}` + "\n"))
	f.Add([]byte(`{"type":"gap","channel":"a","epoch":"k3v9x2","next":4}` + "\r\n{}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		d := NewNDJSONReader(bytes.NewReader(in))
		d.MaxLine = 512
		tr, _ := NewTracker("")
		for range len(in) + 1 {
			line, err := d.NextLine()
			if err != nil {
				return
			}
			if len(line) > 512 {
				t.Fatalf("line of %d bytes over MaxLine", len(line))
			}
			fr, err := ParseFrame(line)
			if err != nil {
				continue
			}
			if _, err := NewTracker(fr.Cursor); fr.Type == "heartbeat" && err != nil {
				t.Fatalf("accepted heartbeat with bad cursor %q", fr.Cursor)
			}
			_ = tr.Apply(fr)
		}
	})
}
