package msg

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// This file holds the one decoder of the hub's two response streams:
// Server-Sent Events (text/event-stream) and NDJSON (application/x-ndjson).
// The Go client, the load generator and the server's tests all read streams
// with it, so what counts as a well-formed stream is decided here once. Each
// decoder bounds what one line may cost, and neither blocks waiting for a
// byte it does not need (a CR is not followed by a read for its LF).

// ErrLineTooLong is wrapped by the error a decoder returns for a line (or an
// SSE event's data) longer than its limit.
var ErrLineTooLong = errors.New("line too long")

// ErrTruncated is wrapped by the errors a decoder returns when the stream
// ends where it may not: [ErrCutLine] and [ErrCutEvent].
var ErrTruncated = errors.New("stream ended in the middle of a line or event")

// ErrCutLine is returned when the stream ends inside a line: a line with no
// end. ErrCutEvent is returned when an SSE stream ends after the lines of an
// event but before the blank line that dispatches it (the HTML standard
// drops such an event; a reader may treat it as the end of the stream).
var (
	ErrCutLine  = fmt.Errorf("%w: a line has no end", ErrTruncated)
	ErrCutEvent = fmt.Errorf("%w: an event has no blank line after it", ErrTruncated)
)

// DefaultMaxLine bounds one line, and one SSE event's data, when a
// decoder's limit is zero: room for a 64 KiB message with its envelope and a
// long cursor.
const DefaultMaxLine = 1 << 20

// SSEEvent is what [SSEDecoder.Next] returns: one event block, or one
// comment line.
type SSEEvent struct {
	// Comment is true for a comment line (": heartbeat"); Data then holds
	// its text after the colon and one optional space, and the other
	// fields are zero.
	Comment bool
	// Type is the block's event field; "" when it had none (an
	// EventSource then dispatches "message").
	Type string
	// ID is the stream's last event ID after this block: the block's id if
	// it had one, else the one before. IDSet says whether it had one.
	ID    string
	IDSet bool
	// Data is the block's data lines joined with "\n"; HasData says
	// whether it had any data field (a block of "data" alone has empty
	// data). The slice is the caller's.
	Data    []byte
	HasData bool
	// Retry is the block's valid retry field in milliseconds, or -1.
	Retry int
}

// SSEDecoder reads a text/event-stream as the HTML standard interprets one
// ("Server-sent events", interpreting an event stream): lines end in CRLF,
// LF or CR; a leading BOM is dropped; a blank line ends a block; "field:
// value" loses one space after the colon; a field with no colon has an
// empty value; unknown fields are ignored, and an id holding NUL is too.
// It returns every block that had at least one known field (event, data,
// id, retry), with or without data, and every comment line, so that each
// reader applies its own rule (an EventSource dispatches only blocks with
// data). It is not safe for concurrent use.
type SSEDecoder struct {
	// LastEventID is the stream's last event ID: set it before the first
	// Next to start from one (a reconnect's Last-Event-ID).
	LastEventID string

	r       *bufio.Reader
	max     int
	started bool
	skipLF  bool // the last line ended in CR: an LF next belongs to it
	line    []byte
}

// NewSSEDecoder returns a decoder of r. maxLine bounds one line and one
// event's data, in bytes; zero means [DefaultMaxLine].
func NewSSEDecoder(r io.Reader, maxLine int) *SSEDecoder {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &SSEDecoder{r: bufio.NewReaderSize(r, 16<<10), max: maxLine}
}

// Next returns the next block or comment. At the end of the stream it
// returns io.EOF between blocks, [ErrCutLine] inside a line and
// [ErrCutEvent] inside a block; a line or data over the limit is an error
// wrapping [ErrLineTooLong]; a read error is returned as it is.
func (d *SSEDecoder) Next() (SSEEvent, error) {
	if !d.started {
		d.started = true
		if b, err := d.r.Peek(3); err == nil && bytes.Equal(b, []byte("\xEF\xBB\xBF")) {
			d.r.Discard(3)
		}
	}
	ev := SSEEvent{Retry: -1}
	id := d.LastEventID
	fields := 0
	for {
		line, err := d.readLine()
		if err != nil {
			if err == io.EOF && fields > 0 {
				return SSEEvent{}, ErrCutEvent
			}
			return SSEEvent{}, err
		}
		if len(line) == 0 {
			if fields == 0 {
				continue
			}
			d.LastEventID = id
			ev.ID = id
			return ev, nil
		}
		if line[0] == ':' {
			return SSEEvent{Comment: true, Retry: -1, Data: bytes.Clone(bytes.TrimPrefix(line[1:], []byte(" ")))}, nil
		}
		name, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], line[i+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(name) {
		case "event":
			ev.Type = string(value)
		case "data":
			if ev.HasData {
				ev.Data = append(ev.Data, '\n')
			}
			if len(ev.Data)+len(value) > d.max {
				return SSEEvent{}, fmt.Errorf("SSE event data longer than %d bytes: %w", d.max, ErrLineTooLong)
			}
			ev.Data = append(ev.Data, value...)
			ev.HasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				id = string(value)
				ev.IDSet = true
			}
		case "retry":
			if n, ok := digits(value); ok {
				ev.Retry = n
			}
		default:
			continue // unknown: ignored, and not counted
		}
		fields++
	}
}

// readLine returns the next line without its end, valid until the next
// call.
func (d *SSEDecoder) readLine() ([]byte, error) {
	d.line = d.line[:0]
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(d.line) > 0 {
				return nil, ErrCutLine
			}
			return nil, err
		}
		if d.skipLF {
			d.skipLF = false
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\n':
			return d.line, nil
		case '\r':
			d.skipLF = true
			return d.line, nil
		}
		if len(d.line) >= d.max {
			return nil, fmt.Errorf("SSE line longer than %d bytes: %w", d.max, ErrLineTooLong)
		}
		d.line = append(d.line, c)
	}
}

// digits parses a non-empty run of ASCII digits that fits an int.
func digits(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(string(b))
	return n, err == nil
}

// NDJSONDecoder reads newline-delimited JSON: one object a line, lines
// ending in LF, CRs before the LF dropped, blank lines skipped. It does not
// parse the lines; [ParseFrame] does. It is not safe for concurrent use.
type NDJSONDecoder struct {
	r    *bufio.Reader
	max  int
	long []byte
}

// NewNDJSONDecoder returns a decoder of r. maxLine bounds one line, in
// bytes; zero means [DefaultMaxLine].
func NewNDJSONDecoder(r io.Reader, maxLine int) *NDJSONDecoder {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return &NDJSONDecoder{r: bufio.NewReaderSize(r, 16<<10), max: maxLine}
}

// Next returns the next line that is not blank, without its end, valid
// until the next call. At the end of the stream it returns io.EOF between
// lines and [ErrCutLine] inside one; a line over the limit is an error
// wrapping [ErrLineTooLong]; a read error is returned as it is.
func (d *NDJSONDecoder) Next() ([]byte, error) {
	for {
		line, err := d.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			d.long = append(d.long[:0], line...)
			for err == bufio.ErrBufferFull {
				if len(d.long) > d.max+2 { // room for CRLF
					return nil, fmt.Errorf("NDJSON line longer than %d bytes: %w", d.max, ErrLineTooLong)
				}
				line, err = d.r.ReadSlice('\n')
				d.long = append(d.long, line...)
			}
			line = d.long
		}
		if err != nil {
			if err == io.EOF {
				if len(bytes.TrimSpace(line)) > 0 {
					return nil, ErrCutLine
				}
				return nil, io.EOF
			}
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > d.max {
			return nil, fmt.Errorf("NDJSON line longer than %d bytes: %w", d.max, ErrLineTooLong)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		return line, nil
	}
}
