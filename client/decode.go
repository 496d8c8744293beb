package client

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/duplexhq/duplex/msg"
)

// This file holds the decoders of the hub's streaming formats: Server-Sent
// Events, NDJSON lines and the long-poll answer. Each bounds what it
// buffers, and each is fuzzed (decode_test.go).

// sseEvent is one event block of a text/event-stream.
type sseEvent struct {
	ID      string // the last event ID after this block
	IDSet   bool   // the block had an id field
	Type    string // the event field; "" means "message"
	Data    []byte // data lines joined with \n
	HasData bool
	Retry   int // the retry field in ms, or -1
}

// sseDecoder reads event blocks per the HTML standard's event-stream
// interpretation: lines end with CRLF, LF or CR; a blank line ends a block;
// lines starting with ':' are comments; "field: value" with one optional
// space after the colon; unknown fields are ignored.
type sseDecoder struct {
	r      *bufio.Reader
	max    int // longest line and longest data
	skipLF bool
	lastID string
	line   []byte
}

func newSSEDecoder(r io.Reader, max int) *sseDecoder {
	return &sseDecoder{r: bufio.NewReaderSize(r, 4096), max: max}
}

var errTruncated = errors.New("stream ended in the middle of a line or event")

// readLine returns the next line without its end. At the end of the
// stream it returns io.EOF if no partial line was read, otherwise a
// protocol error.
func (d *sseDecoder) readLine() ([]byte, error) {
	d.line = d.line[:0]
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(d.line) > 0 {
				return nil, fmt.Errorf("%w: %v", ErrProtocol, errTruncated)
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
			return nil, fmt.Errorf("%w: SSE line longer than %d bytes", ErrProtocol, d.max)
		}
		d.line = append(d.line, c)
	}
}

// Next returns the next block that had at least one field. A stream that
// ends inside a block is a protocol error; one that ends between blocks
// returns io.EOF.
func (d *sseDecoder) Next() (sseEvent, error) {
	ev := sseEvent{Retry: -1}
	fields := 0
	for {
		line, err := d.readLine()
		if err != nil {
			if err == io.EOF && fields > 0 {
				return sseEvent{}, fmt.Errorf("%w: %v", ErrProtocol, errTruncated)
			}
			return sseEvent{}, err
		}
		if len(line) == 0 {
			if fields == 0 {
				continue
			}
			ev.ID = d.lastID
			return ev, nil
		}
		if line[0] == ':' {
			continue // comment (heartbeat)
		}
		name, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(name) {
		case "event":
			ev.Type = string(value)
		case "data":
			if ev.HasData {
				ev.Data = append(ev.Data, '\n')
			}
			if len(ev.Data)+len(value) > d.max {
				return sseEvent{}, fmt.Errorf("%w: SSE event data longer than %d bytes", ErrProtocol, d.max)
			}
			ev.Data = append(ev.Data, value...)
			ev.HasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				d.lastID = string(value)
				ev.IDSet = true
			}
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 && isDigits(value) {
				ev.Retry = n
			}
		default:
			continue // unknown field: ignored, and not counted
		}
		fields++
	}
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// lineDecoder reads NDJSON: one JSON object a line, lines ending in LF
// (a CR before it is dropped). Blank lines are skipped.
type lineDecoder struct {
	r    *bufio.Reader
	max  int
	long []byte
}

func newLineDecoder(r io.Reader, max int) *lineDecoder {
	return &lineDecoder{r: bufio.NewReaderSize(r, 16<<10), max: max}
}

// Next returns the next non-blank line, valid until the next call. A
// stream that ends inside a line is a protocol error; one that ends
// between lines returns io.EOF.
func (d *lineDecoder) Next() ([]byte, error) {
	for {
		line, err := d.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			d.long = append(d.long[:0], line...)
			for err == bufio.ErrBufferFull {
				if len(d.long) > d.max {
					return nil, fmt.Errorf("%w: NDJSON line longer than %d bytes", ErrProtocol, d.max)
				}
				line, err = d.r.ReadSlice('\n')
				d.long = append(d.long, line...)
			}
			line = d.long
		}
		if err != nil {
			if err == io.EOF {
				if len(bytes.TrimSpace(line)) > 0 {
					return nil, fmt.Errorf("%w: %v", ErrProtocol, errTruncated)
				}
				return nil, io.EOF
			}
			return nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > d.max {
			return nil, fmt.Errorf("%w: NDJSON line longer than %d bytes", ErrProtocol, d.max)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		return line, nil
	}
}

// pollAnswer is a decoded long-poll answer: Messages holds its messages,
// items its messages and joins/leaves (join_leave=1) in the answer's order.
type pollAnswer struct {
	msg.PollResponse
	items []Event
}

// decodePoll decodes and checks a long-poll answer.
func decodePoll(b []byte) (*pollAnswer, error) {
	var raw struct {
		Messages []json.RawMessage `json:"messages"`
		Gaps     []msg.Gap         `json:"gaps"`
		Cursor   string            `json:"cursor"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: long-poll answer: %v (%s)", ErrProtocol, err, quote(b))
	}
	p := pollAnswer{PollResponse: msg.PollResponse{Gaps: raw.Gaps, Cursor: raw.Cursor}}
	if raw.Messages != nil {
		p.Messages = make([]msg.Envelope, 0, len(raw.Messages))
	}
	var pending []Event // events, messages kept as indexes into Messages
	for _, m := range raw.Messages {
		f, err := decodeFrame(m)
		if err != nil {
			return nil, fmt.Errorf("long-poll answer: %w", err)
		}
		if f.Type == msg.TypeJoin || f.Type == msg.TypeLeave {
			ev := f.presence()
			if err := checkPresence(ev); err != nil {
				return nil, fmt.Errorf("long-poll answer: %w", err)
			}
			pending = append(pending, Event{Presence: ev})
			continue
		}
		p.Messages = append(p.Messages, *f.envelope())
		pending = append(pending, Event{})
	}
	i := 0
	for _, ev := range pending {
		if ev.Presence == nil {
			ev.Message = &p.Messages[i]
			i++
		}
		p.items = append(p.items, ev)
	}
	if p.Messages == nil && p.Gaps == nil && p.Cursor == "" {
		return nil, fmt.Errorf("%w: long-poll answer has no messages, gaps or cursor (%s)", ErrProtocol, quote(b))
	}
	for i := range p.Messages {
		if err := checkEnvelope(&p.Messages[i]); err != nil {
			return nil, fmt.Errorf("long-poll answer: %w", err)
		}
	}
	for i := range p.Gaps {
		if err := checkGap(&p.Gaps[i]); err != nil {
			return nil, fmt.Errorf("long-poll answer: %w", err)
		}
	}
	if _, err := msg.ParseCursor(p.Cursor); err != nil {
		return nil, fmt.Errorf("%w: long-poll answer: %v", ErrProtocol, err)
	}
	return &p, nil
}
