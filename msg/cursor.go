package msg

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Position is where a reader stands in one channel: the epoch it has seen and
// the offset of the last message it processed. An empty Epoch matches any
// epoch; Offset 0 means "before the oldest retained message".
type Position struct {
	Epoch  string
	Offset uint64
}

// Cursor maps channel names to positions. Its text form is
// "chat:k3v9x2:42,news:k3v9x2:7": entries of channel:epoch:offset joined by
// commas. A nil Cursor is empty and valid.
type Cursor map[string]Position

// MaxCursorEntries bounds how many entries ParseCursor accepts, so a hostile
// cursor costs bounded work. Servers apply their own, lower, channel limit.
const MaxCursorEntries = 1024

// ErrInvalidCursor is wrapped by every error ParseCursor returns.
var ErrInvalidCursor = errors.New("invalid cursor")

// ParseCursor parses the text form of a cursor. An empty string is an empty
// cursor. Each entry is parsed from the right, because channel names may hold
// ':'. A channel may appear once.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	if n := strings.Count(s, ",") + 1; n > MaxCursorEntries {
		return nil, fmt.Errorf("%w: %d entries, at most %d", ErrInvalidCursor, n, MaxCursorEntries)
	}
	c := make(Cursor)
	for entry := range strings.SplitSeq(s, ",") {
		ch, pos, err := parseEntry(entry)
		if err != nil {
			return nil, err
		}
		if _, dup := c[ch]; dup {
			return nil, fmt.Errorf("%w: channel %q appears twice", ErrInvalidCursor, ch)
		}
		c[ch] = pos
	}
	return c, nil
}

func parseEntry(entry string) (string, Position, error) {
	i := strings.LastIndexByte(entry, ':')
	if i < 0 {
		return "", Position{}, fmt.Errorf("%w: entry %q is not channel:epoch:offset", ErrInvalidCursor, entry)
	}
	offText := entry[i+1:]
	rest := entry[:i]
	j := strings.LastIndexByte(rest, ':')
	if j < 0 {
		return "", Position{}, fmt.Errorf("%w: entry %q is not channel:epoch:offset", ErrInvalidCursor, entry)
	}
	ch, epoch := rest[:j], rest[j+1:]
	if !ValidChannel(ch) {
		return "", Position{}, fmt.Errorf("%w: invalid channel in entry %q", ErrInvalidCursor, entry)
	}
	if epoch != "" && !ValidEpoch(epoch) {
		return "", Position{}, fmt.Errorf("%w: invalid epoch in entry %q", ErrInvalidCursor, entry)
	}
	off, err := ParseOffset(offText)
	if err != nil {
		return "", Position{}, fmt.Errorf("%w: invalid offset in entry %q", ErrInvalidCursor, entry)
	}
	return ch, Position{Epoch: epoch, Offset: off}, nil
}

// ParseOffset parses a decimal offset: digits only, no sign, at most 20.
func ParseOffset(s string) (uint64, error) {
	if s == "" || len(s) > 20 {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// String formats c in its text form, entries sorted by channel name so that
// equal cursors have equal text.
func (c Cursor) String() string {
	return string(c.AppendText(nil))
}

// AppendText appends the text form of c to b.
func (c Cursor) AppendText(b []byte) []byte {
	names := make([]string, 0, len(c))
	for ch := range c {
		names = append(names, ch)
	}
	sort.Strings(names)
	return c.AppendTextOrdered(b, names)
}

// AppendTextOrdered appends the text form of c to b, its entries in the
// order of names, which must be c's channels, sorted. A writer that frames
// the cursor after every message keeps names once instead of sorting each
// time.
func (c Cursor) AppendTextOrdered(b []byte, names []string) []byte {
	for i, ch := range names {
		if i > 0 {
			b = append(b, ',')
		}
		p := c[ch]
		b = append(b, ch...)
		b = append(b, ':')
		b = append(b, p.Epoch...)
		b = append(b, ':')
		b = strconv.AppendUint(b, p.Offset, 10)
	}
	return b
}

// Clone returns a copy of c.
func (c Cursor) Clone() Cursor {
	d := make(Cursor, len(c))
	for k, v := range c {
		d[k] = v
	}
	return d
}

// The cursor-advance rule, the same on every transport: after a message
// the reader stands at its epoch and offset; after a gap notice it stands
// just before the gap's next offset, in the gap's epoch, so that the next
// message (offset next) follows without a hole.

// AdvanceMessage moves c past the message at offset of channel in epoch.
func (c Cursor) AdvanceMessage(channel, epoch string, offset uint64) {
	c[channel] = Position{Epoch: epoch, Offset: offset}
}

// AdvanceGap moves c past a gap notice of channel: to next-1 of epoch.
func (c Cursor) AdvanceGap(channel, epoch string, next uint64) {
	c[channel] = Position{Epoch: epoch, Offset: next - 1}
}
