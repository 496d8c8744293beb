package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// This file decodes what the hub's streaming transports send, for the load
// generator and for tests that read the hub over raw HTTP: an SSE decoder
// that follows the WHATWG event-stream parsing rules, an NDJSON frame reader
// and a cursor tracker. Both readers bound the work and memory one hostile
// line can cost.

// DefaultMaxLine bounds one line (SSE) or one object (NDJSON), in bytes,
// when a reader's MaxLine is zero: room for a 64 KiB message with its
// envelope and a long cursor.
const DefaultMaxLine = 1 << 20

// ErrLineTooLong is wrapped by the error a reader returns for a line over
// its MaxLine.
var ErrLineTooLong = errors.New("line too long")

// SSEEvent is one dispatched event, or one comment line.
type SSEEvent struct {
	// Comment is true for a comment line (": heartbeat"); Data then holds
	// the comment's text and the other fields are empty.
	Comment bool
	// Type is the event type; "message" when the block had no event field.
	Type string
	// ID is the stream's last event ID after this event: the id of this
	// block if it had one, else the one before.
	ID   string
	Data []byte
}

// SSEReader decodes a text/event-stream (WHATWG HTML, "Server-sent events",
// interpreting an event stream): lines end in CRLF, LF or CR; a leading BOM
// is dropped; blocks end with a blank line; a block with no data dispatches
// no event but still sets LastEventID. It is not safe for concurrent use.
type SSEReader struct {
	r *bufio.Reader
	// MaxLine bounds one line, and the data of one event, in bytes. Zero
	// means DefaultMaxLine.
	MaxLine int
	// LastEventID is the last event ID string, as an EventSource keeps it:
	// what a reconnect sends as Last-Event-ID.
	LastEventID string
	// Retry is the last valid retry: field, zero before one.
	Retry time.Duration

	started bool
	// the block being read
	idBuf   string
	typ     string
	data    []byte
	hasData bool
	line    []byte
}

// NewSSEReader returns a decoder reading r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{r: bufio.NewReaderSize(r, 16<<10)}
}

// Next returns the next event or comment. It returns io.EOF at the end of
// the stream; an event not ended by a blank line is dropped, as the spec
// says.
func (d *SSEReader) Next() (SSEEvent, error) {
	if !d.started {
		d.started = true
		if b, err := d.r.Peek(3); err == nil && bytes.Equal(b, []byte("\xEF\xBB\xBF")) {
			d.r.Discard(3)
		}
		d.idBuf = d.LastEventID
	}
	for {
		line, err := d.readLine()
		if err != nil {
			return SSEEvent{}, err
		}
		if len(line) == 0 {
			// Dispatch.
			d.LastEventID = d.idBuf
			if !d.hasData {
				d.typ, d.data = "", d.data[:0]
				continue
			}
			data := d.data
			if n := len(data); n > 0 && data[n-1] == '\n' {
				data = data[:n-1]
			}
			ev := SSEEvent{Type: d.typ, ID: d.LastEventID, Data: bytes.Clone(data)}
			if ev.Type == "" {
				ev.Type = "message"
			}
			d.typ, d.data, d.hasData = "", d.data[:0], false
			return ev, nil
		}
		if line[0] == ':' {
			return SSEEvent{Comment: true, Data: bytes.Clone(bytes.TrimPrefix(line[1:], []byte(" ")))}, nil
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "event":
			d.typ = string(value)
		case "data":
			if len(d.data)+len(value)+1 > d.maxLine() {
				return SSEEvent{}, fmt.Errorf("sse: event data: %w", ErrLineTooLong)
			}
			d.data = append(d.data, value...)
			d.data = append(d.data, '\n')
			d.hasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				d.idBuf = string(value)
			}
		case "retry":
			if n, ok := asciiDigits(value); ok {
				d.Retry = time.Duration(n) * time.Millisecond
			}
		}
	}
}

func (d *SSEReader) maxLine() int {
	if d.MaxLine > 0 {
		return d.MaxLine
	}
	return DefaultMaxLine
}

// readLine reads one line without its end (CRLF, LF or CR). The result is
// valid until the next call.
func (d *SSEReader) readLine() ([]byte, error) {
	d.line = d.line[:0]
	for {
		b, err := d.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(d.line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch b {
		case '\n':
			return d.line, nil
		case '\r':
			if next, err := d.r.Peek(1); err == nil && next[0] == '\n' {
				d.r.Discard(1)
			}
			return d.line, nil
		}
		if len(d.line) >= d.maxLine() {
			return nil, fmt.Errorf("sse: %w (over %d bytes)", ErrLineTooLong, d.maxLine())
		}
		d.line = append(d.line, b)
	}
}

func asciiDigits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// Frame is one object of the hub's streams: an envelope ("message"), a gap
// notice ("gap") or an NDJSON heartbeat ("heartbeat").
type Frame struct {
	Type    string          `json:"type"`
	Channel string          `json:"channel,omitempty"`
	Epoch   string          `json:"epoch,omitempty"`
	Offset  uint64          `json:"offset,omitempty"`
	Time    int64           `json:"time,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	Next    uint64          `json:"next,omitempty"`   // gap
	Cursor  string          `json:"cursor,omitempty"` // heartbeat
}

// ParseFrame decodes one frame and checks that its type is known and its
// fields fit it.
func ParseFrame(b []byte) (Frame, error) {
	var f Frame
	if err := json.Unmarshal(b, &f); err != nil {
		return Frame{}, fmt.Errorf("frame: %w", err)
	}
	switch f.Type {
	case msg.TypeMessage:
		if !msg.ValidChannel(f.Channel) || !msg.ValidEpoch(f.Epoch) || f.Offset == 0 {
			return Frame{}, fmt.Errorf("frame: message without a valid channel, epoch and offset")
		}
	case msg.TypeGap:
		if !msg.ValidChannel(f.Channel) || !msg.ValidEpoch(f.Epoch) || f.Next == 0 {
			return Frame{}, fmt.Errorf("frame: gap without a valid channel, epoch and next")
		}
	case msg.TypeHeartbeat:
		if _, err := msg.ParseCursor(f.Cursor); err != nil {
			return Frame{}, fmt.Errorf("frame: heartbeat: %w", err)
		}
	default:
		return Frame{}, fmt.Errorf("frame: unknown type %q", truncate(f.Type))
	}
	return f, nil
}

// NDJSONReader reads the frames of an application/x-ndjson stream, one
// JSON object a line. It is not safe for concurrent use.
type NDJSONReader struct {
	r *bufio.Reader
	// MaxLine bounds one line, in bytes. Zero means DefaultMaxLine.
	MaxLine int
	line    []byte
}

// NewNDJSONReader returns a reader of r.
func NewNDJSONReader(r io.Reader) *NDJSONReader {
	return &NDJSONReader{r: bufio.NewReaderSize(r, 16<<10)}
}

// NextLine returns the next line without its LF (and a CR before it). It
// returns io.EOF at the end of the stream and io.ErrUnexpectedEOF for a
// last line without its LF. The line is valid until the next call.
func (d *NDJSONReader) NextLine() ([]byte, error) {
	max := d.MaxLine
	if max <= 0 {
		max = DefaultMaxLine
	}
	d.line = d.line[:0]
	for {
		chunk, err := d.r.ReadSlice('\n')
		if len(d.line)+len(chunk) > max+1 {
			return nil, fmt.Errorf("ndjson: %w (over %d bytes)", ErrLineTooLong, max)
		}
		d.line = append(d.line, chunk...)
		switch {
		case err == nil:
			line := d.line[:len(d.line)-1]
			return bytes.TrimSuffix(line, []byte("\r")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(d.line) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// Next returns the next frame.
func (d *NDJSONReader) Next() (Frame, error) {
	line, err := d.NextLine()
	if err != nil {
		return Frame{}, err
	}
	return ParseFrame(line)
}

// Tracker follows a reader's cursor through the frames it processes, and
// checks that each channel's offsets come in order with no hole and no
// duplicate unless a gap announced the jump.
type Tracker struct {
	Cursor msg.Cursor
}

// NewTracker starts from cursor text (empty: no position).
func NewTracker(cursor string) (*Tracker, error) {
	c, err := msg.ParseCursor(cursor)
	if err != nil {
		return nil, err
	}
	return &Tracker{Cursor: c}, nil
}

// Apply advances the cursor past f. It returns an error for a message that
// does not follow the cursor (a loss or a duplicate) in the same epoch.
func (t *Tracker) Apply(f Frame) error {
	switch f.Type {
	case msg.TypeMessage:
		p, ok := t.Cursor[f.Channel]
		if ok && p.Epoch != "" && p.Epoch != f.Epoch {
			return fmt.Errorf("channel %s: epoch %s after %s without a gap", f.Channel, f.Epoch, p.Epoch)
		}
		if ok && f.Offset != p.Offset+1 {
			return fmt.Errorf("channel %s: offset %d after %d", f.Channel, f.Offset, p.Offset)
		}
		t.Cursor[f.Channel] = msg.Position{Epoch: f.Epoch, Offset: f.Offset}
	case msg.TypeGap:
		t.Cursor[f.Channel] = msg.Position{Epoch: f.Epoch, Offset: f.Next - 1}
	}
	return nil
}

// String returns the cursor's text.
func (t *Tracker) String() string { return t.Cursor.String() }

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
