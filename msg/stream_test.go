package msg

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the code produces:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// describeSSE decodes a whole stream into one line per event.
func describeSSE(r io.Reader, max int) (string, error) {
	var out strings.Builder
	d := NewSSEDecoder(r, max)
	for {
		ev, err := d.Next()
		if err != nil {
			if err == io.EOF {
				return out.String(), nil
			}
			fmt.Fprintf(&out, "error: %v\n", err)
			return out.String(), err
		}
		fmt.Fprintf(&out, "comment=%v type=%q id=%q idset=%v hasdata=%v retry=%d data=%q\n",
			ev.Comment, ev.Type, ev.ID, ev.IDSet, ev.HasData, ev.Retry, ev.Data)
	}
}

func describeNDJSON(r io.Reader, max int) (string, error) {
	var out strings.Builder
	d := NewNDJSONDecoder(r, max)
	for {
		line, err := d.Next()
		if err != nil {
			if err == io.EOF {
				return out.String(), nil
			}
			fmt.Fprintf(&out, "error: %v\n", err)
			return out.String(), err
		}
		f, err := ParseFrame(line)
		fmt.Fprintf(&out, "line=%q frame=%+v err=%v\n", line, f, err)
	}
}

// TestStreamGolden: the hub's streams, as testdata/*.sse and *.ndjson hold
// them, decode to what the golden files say, also one byte at a time.
func TestStreamGolden(t *testing.T) {
	for _, name := range []string{"stream.sse", "stream.ndjson"} {
		in, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		describe := describeSSE
		if strings.HasSuffix(name, ".ndjson") {
			describe = describeNDJSON
		}
		got, _ := describe(bytes.NewReader(in), 0)
		golden(t, name+".golden", []byte(got))
		slow, _ := describe(iotest.OneByteReader(bytes.NewReader(in)), 0)
		if slow != got {
			t.Errorf("%s: one byte at a time decodes differently:\n%s", name, slow)
		}
	}
}

// TestWireGolden: the replies and pages the hub writes, byte for byte.
func TestWireGolden(t *testing.T) {
	var b bytes.Buffer
	for _, in := range []string{
		`{"id":1,"type":"subscribe","channel":"chat","epoch":"k3v9x2","offset":42}`,
		`{"id":"two","type":"unsubscribe","channel":"chat"}`,
		`{"id":3,"type":"publish","channel":"chat","data":{"text":"hi"}}`,
		`{"id":4,"type":"history","channel":"chat","after":0,"limit":1001}`,
		`{"id":5,"type":"ping"}`,
		`{"type":"ping"}`,
		`{"id":6,"type":"subscribe","channel":"chat","epoch":"k3v9x2"}`,
		`{"id":7,"type":"dance"}`,
		`{"id":8,"type":7}`,
	} {
		cmd, err := ParseCommand([]byte(in))
		fmt.Fprintf(&b, "command %s\n", in)
		if err != nil {
			fmt.Fprintf(&b, "  reply %s\n", ErrorReply(cmd.ID, err))
			continue
		}
		fmt.Fprintf(&b, "  pong  %s\n  ok    %s\n  pos   %s\n", PongReply(cmd.ID), OKReply(cmd.ID),
			PositionReply(cmd.ID, "chat", "k3v9x2", 42, 1763980000123, cmd.Type == CmdPublish))
	}
	envs := [][]byte{
		[]byte(`{"type":"message","channel":"chat","epoch":"k3v9x2","offset":5,"time":1,"data":"aaaaaaaaaa"}`),
		[]byte(`{"type":"message","channel":"chat","epoch":"k3v9x2","offset":6,"time":2,"data":"bbbbbbbbbb"}`),
	}
	at := func(i int) ([]byte, uint64) { return envs[i], uint64(5 + i) }
	for _, max := range []int{0, 120} {
		p := HistoryPage{Channel: "chat", Epoch: "k3v9x2", After: 4, Oldest: 5, Latest: 6, MaxBytes: max}
		page, n := p.AppendMembers([]byte("{"), len(envs), at)
		fmt.Fprintf(&b, "history max=%d held=%d %s}\n", max, n, page)
	}
	empty := HistoryPage{Channel: "chat", Epoch: "k3v9x2", After: 9, Oldest: 10, Latest: 9}
	page, _ := empty.AppendMembers(append(AppendReplyStart(nil, []byte(`4`), ReplyOK), ','), 0, at)
	fmt.Fprintf(&b, "history empty %s}\n", page)
	golden(t, "wire.golden", b.Bytes())
}

// FuzzSSEDecoder: any input decodes without panic, within the limit, the
// same one byte at a time, and ends in io.EOF or an error of the decoder's.
func FuzzSSEDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 256
		d := NewSSEDecoder(bytes.NewReader(b), max)
		n := 0
		for ; ; n++ {
			ev, err := d.Next()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("error %v is not the decoder's", err)
				}
				break
			}
			if len(ev.Data) > max {
				t.Fatalf("data of %d bytes past the limit %d", len(ev.Data), max)
			}
			if n > len(b) {
				t.Fatalf("more events than input bytes")
			}
		}
		fast, _ := describeSSE(bytes.NewReader(b), max)
		slow, _ := describeSSE(iotest.OneByteReader(bytes.NewReader(b)), max)
		if fast != slow {
			t.Fatalf("one byte at a time differs:\n%s\n%s", fast, slow)
		}
	})
}

// FuzzNDJSONDecoder: lines within the limit, without line ends, never
// blank; frames ParseFrame accepts are valid.
func FuzzNDJSONDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 512
		d := NewNDJSONDecoder(bytes.NewReader(b), max)
		for {
			line, err := d.Next()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrLineTooLong) {
					t.Fatalf("error %v is not the decoder's", err)
				}
				return
			}
			if len(line) > max || bytes.ContainsAny(line, "\n") || len(bytes.TrimSpace(line)) == 0 {
				t.Fatalf("line %q: over the limit, holding LF, or blank", line)
			}
			fr, err := ParseFrame(line)
			if err != nil {
				if !errors.Is(err, ErrInvalidFrame) {
					t.Fatalf("ParseFrame error %v does not wrap ErrInvalidFrame", err)
				}
				continue
			}
			if fr.Type == TypeMessage {
				if e := fr.Envelope(); !ValidChannel(e.Channel) || e.Offset == 0 {
					t.Fatalf("accepted message %+v", fr)
				}
			}
		}
	})
}
