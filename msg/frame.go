package msg

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrInvalidFrame is wrapped by every error [ParseFrame] and the Validate
// methods return.
var ErrInvalidFrame = errors.New("invalid frame")

// Validate reports what is wrong with e as a delivered message: every
// envelope has type "message", a valid channel and epoch, an offset from 1
// and data.
func (e *Envelope) Validate() error {
	switch {
	case e.Type != TypeMessage:
		return fmt.Errorf("%w: envelope type %q", ErrInvalidFrame, e.Type)
	case !ValidChannel(e.Channel):
		return fmt.Errorf("%w: envelope with invalid channel %q", ErrInvalidFrame, e.Channel)
	case !ValidEpoch(e.Epoch):
		return fmt.Errorf("%w: envelope with invalid epoch %q", ErrInvalidFrame, e.Epoch)
	case e.Offset == 0:
		return fmt.Errorf("%w: envelope with offset 0", ErrInvalidFrame)
	case len(e.Data) == 0:
		return fmt.Errorf("%w: envelope without data", ErrInvalidFrame)
	}
	return nil
}

// Validate reports what is wrong with g as a gap notice: type "gap", a
// valid channel and epoch, and a next offset from 1.
func (g *Gap) Validate() error {
	switch {
	case g.Type != TypeGap:
		return fmt.Errorf("%w: gap type %q", ErrInvalidFrame, g.Type)
	case !ValidChannel(g.Channel):
		return fmt.Errorf("%w: gap with invalid channel %q", ErrInvalidFrame, g.Channel)
	case !ValidEpoch(g.Epoch):
		return fmt.Errorf("%w: gap with invalid epoch %q", ErrInvalidFrame, g.Epoch)
	case g.Next == 0:
		return fmt.Errorf("%w: gap with next 0", ErrInvalidFrame)
	}
	return nil
}

// Frame is one object of the hub's SSE and NDJSON streams: an envelope
// ("message"), a gap notice ("gap") or an NDJSON heartbeat ("heartbeat"),
// its members merged.
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

// Envelope returns f as a message envelope.
func (f *Frame) Envelope() Envelope {
	return Envelope{Type: f.Type, Channel: f.Channel, Epoch: f.Epoch, Offset: f.Offset, Time: f.Time, Data: f.Data}
}

// Gap returns f as a gap notice.
func (f *Frame) Gap() Gap {
	return Gap{Type: f.Type, Channel: f.Channel, Epoch: f.Epoch, Next: f.Next}
}

// ParseFrame decodes one stream frame and checks that its type is known and
// its members fit it. Every error wraps [ErrInvalidFrame].
func ParseFrame(b []byte) (Frame, error) {
	var f Frame
	if err := json.Unmarshal(b, &f); err != nil {
		return Frame{}, fmt.Errorf("%w: %v", ErrInvalidFrame, err)
	}
	switch f.Type {
	case TypeMessage:
		if !ValidChannel(f.Channel) || !ValidEpoch(f.Epoch) || f.Offset == 0 {
			return Frame{}, fmt.Errorf("%w: message without a valid channel, epoch and offset", ErrInvalidFrame)
		}
	case TypeGap:
		g := f.Gap()
		if err := g.Validate(); err != nil {
			return Frame{}, err
		}
	case TypeHeartbeat:
		if _, err := ParseCursor(f.Cursor); err != nil {
			return Frame{}, fmt.Errorf("%w: heartbeat: %v", ErrInvalidFrame, err)
		}
	default:
		return Frame{}, fmt.Errorf("%w: unknown type %q", ErrInvalidFrame, truncate(f.Type))
	}
	return f, nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
