package bench

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/duplexhq/duplex/msg"
)

// This file adapts the hub's stream decoders (msg.SSEDecoder,
// msg.NDJSONDecoder, msg.ParseFrame: the one definition of a well-formed
// stream, shared with the Go client) to the load generator and to tests
// that read the hub over raw HTTP, with the HTML standard's EventSource
// rules on top (only blocks with data dispatch; an event cut by the end of
// the stream is dropped), and a cursor tracker. The fan-out readers of
// stream.go do not decode at all: they find each line's stamp, so that the
// load generator leaves the hub as much of the machine as it can.

// DefaultMaxLine bounds one line (SSE) or one object (NDJSON), in bytes,
// when a reader's MaxLine is zero.
const DefaultMaxLine = msg.DefaultMaxLine

// ErrLineTooLong is wrapped by the error a reader returns for a line over
// its MaxLine.
var ErrLineTooLong = msg.ErrLineTooLong

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

// SSEReader decodes a text/event-stream as an EventSource does: a block
// with no data dispatches no event but still sets LastEventID. It is not
// safe for concurrent use.
type SSEReader struct {
	r io.Reader
	d *msg.SSEDecoder
	// MaxLine bounds one line, and the data of one event, in bytes. Zero
	// means DefaultMaxLine. Set it before the first Next.
	MaxLine int
	// LastEventID is the last event ID string, as an EventSource keeps it:
	// what a reconnect sends as Last-Event-ID.
	LastEventID string
	// Retry is the last valid retry: field, zero before one.
	Retry time.Duration
}

// NewSSEReader returns a decoder reading r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{r: r}
}

// Next returns the next event or comment. It returns io.EOF at the end of
// the stream (an event not ended by a blank line is dropped, as the spec
// says) and io.ErrUnexpectedEOF when the stream ends inside a line.
func (d *SSEReader) Next() (SSEEvent, error) {
	if d.d == nil {
		d.d = msg.NewSSEDecoder(d.r, d.MaxLine)
		d.d.LastEventID = d.LastEventID
	}
	for {
		ev, err := d.d.Next()
		switch {
		case errors.Is(err, msg.ErrCutEvent):
			return SSEEvent{}, io.EOF
		case errors.Is(err, msg.ErrCutLine):
			return SSEEvent{}, io.ErrUnexpectedEOF
		case err != nil:
			return SSEEvent{}, err
		}
		if ev.Comment {
			return SSEEvent{Comment: true, Data: ev.Data}, nil
		}
		if ev.Retry >= 0 {
			d.Retry = time.Duration(ev.Retry) * time.Millisecond
		}
		d.LastEventID = d.d.LastEventID
		if !ev.HasData {
			continue
		}
		typ := ev.Type
		if typ == "" {
			typ = "message"
		}
		if ev.Data == nil {
			ev.Data = []byte{}
		}
		return SSEEvent{Type: typ, ID: ev.ID, Data: ev.Data}, nil
	}
}

// Frame is one object of the hub's streams (msg.Frame).
type Frame = msg.Frame

// ParseFrame decodes one frame and checks that its type is known and its
// fields fit it.
func ParseFrame(b []byte) (Frame, error) { return msg.ParseFrame(b) }

// NDJSONReader reads the frames of an application/x-ndjson stream, one
// JSON object a line. It is not safe for concurrent use.
type NDJSONReader struct {
	r io.Reader
	d *msg.NDJSONDecoder
	// MaxLine bounds one line, in bytes. Zero means DefaultMaxLine. Set it
	// before the first call.
	MaxLine int
}

// NewNDJSONReader returns a reader of r.
func NewNDJSONReader(r io.Reader) *NDJSONReader {
	return &NDJSONReader{r: r}
}

// NextLine returns the next line that is not blank, without its end. It
// returns io.EOF at the end of the stream and io.ErrUnexpectedEOF for a
// last line without its LF. The line is valid until the next call.
func (d *NDJSONReader) NextLine() ([]byte, error) {
	if d.d == nil {
		d.d = msg.NewNDJSONDecoder(d.r, d.MaxLine)
	}
	line, err := d.d.Next()
	if errors.Is(err, msg.ErrCutLine) {
		return nil, io.ErrUnexpectedEOF
	}
	return line, err
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
		t.Cursor.AdvanceMessage(f.Channel, f.Epoch, f.Offset)
	case msg.TypeGap:
		t.Cursor.AdvanceGap(f.Channel, f.Epoch, f.Next)
	}
	return nil
}

// String returns the cursor's text.
func (t *Tracker) String() string { return t.Cursor.String() }
