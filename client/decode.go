package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/duplexhq/duplex/msg"
)

// This file adapts the hub's stream decoders (msg.SSEDecoder,
// msg.NDJSONDecoder: the one definition of a well-formed stream, shared
// with the hub's tests and the load generator) to the client: comments are
// skipped, a stream that ends inside a line or an event, or a line over
// DialOptions.MaxFrame, is ErrProtocol, and a read error stays what it is.
// The long-poll answer is decoded here too. Each is fuzzed
// (decode_test.go).

// sseEvent is one event block of a text/event-stream.
type sseEvent = msg.SSEEvent

// sseDecoder returns the blocks of an event stream that had at least one
// field, with or without data.
type sseDecoder struct {
	d *msg.SSEDecoder
}

func newSSEDecoder(r io.Reader, max int) *sseDecoder {
	return &sseDecoder{d: msg.NewSSEDecoder(r, max)}
}

// Next returns the next block. A stream that ends between blocks returns
// io.EOF.
func (d *sseDecoder) Next() (sseEvent, error) {
	for {
		ev, err := d.d.Next()
		if err != nil {
			return sseEvent{}, protocolError(err)
		}
		if !ev.Comment {
			return ev, nil
		}
	}
}

// protocolError makes the decoders' verdicts on the stream ErrProtocol.
func protocolError(err error) error {
	if errors.Is(err, msg.ErrTruncated) || errors.Is(err, msg.ErrLineTooLong) {
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	return err
}

// lineDecoder reads NDJSON: one JSON object a line.
type lineDecoder struct {
	d *msg.NDJSONDecoder
}

func newLineDecoder(r io.Reader, max int) *lineDecoder {
	return &lineDecoder{d: msg.NewNDJSONDecoder(r, max)}
}

// Next returns the next non-blank line, valid until the next call. A
// stream that ends between lines returns io.EOF.
func (d *lineDecoder) Next() ([]byte, error) {
	line, err := d.d.Next()
	return line, protocolError(err)
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
