package server

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

// The close-frame scanner: the library echoes a client's close reason
// without checking it, so wsNetConn.Read watches the client's frame
// headers and refuses a close reason that is not UTF-8 (RFC 6455 §5.5.1,
// answered 1007) before the library sees it. It also tells the read path
// whether the bytes read end between messages (where a polled read may
// park).

// errBadCloseReason fails a connection whose peer sent a close frame with a
// reason that is not UTF-8 (RFC 6455 §8.1 and §5.5.1: answered with 1007).
var errBadCloseReason = errors.New("close frame reason is not valid UTF-8")

// closeScan follows the client's frames through the raw byte stream, ahead
// of the WebSocket library, to catch one thing the library lets through: a
// close frame whose reason is not valid UTF-8 (it would echo it back).
// It reads frame headers and counts payload bytes; only close payloads
// (at most 125 bytes) are kept. The reading goroutine owns it.
type closeScan struct {
	hdr     [14]byte
	hlen    int    // header bytes collected
	need    int    // header length, known once two bytes are in
	remain  uint64 // payload bytes left in the current frame
	inBody  bool
	isClose bool
	// midMessage is set between the frames of a fragmented data message.
	midMessage bool
	mask       [4]byte // zero for an unmasked frame (which the library refuses)
	pos        int     // payload position, for unmasking
	pay        []byte
}

// scan consumes p and reports false once a close frame with an invalid
// reason is complete.
func (s *closeScan) scan(p []byte) bool {
	for len(p) > 0 {
		if s.inBody {
			n := len(p)
			if uint64(n) > s.remain {
				n = int(s.remain)
			}
			if s.isClose {
				for _, b := range p[:n] {
					b ^= s.mask[s.pos%4]
					if len(s.pay) < 125 {
						s.pay = append(s.pay, b)
					}
					s.pos++
				}
			}
			p = p[n:]
			s.remain -= uint64(n)
			if s.remain == 0 {
				s.inBody = false
				if !s.closeOK() {
					return false
				}
			}
			continue
		}
		s.hdr[s.hlen] = p[0]
		s.hlen++
		p = p[1:]
		if s.hlen == 2 {
			s.need = 2
			switch s.hdr[1] & 0x7f {
			case 126:
				s.need += 2
			case 127:
				s.need += 8
			}
			if s.hdr[1]&0x80 != 0 {
				s.need += 4
			}
		}
		if s.hlen < 2 || s.hlen < s.need {
			continue
		}
		// A whole header.
		var length uint64
		switch l := s.hdr[1] & 0x7f; l {
		case 126:
			length = uint64(binary.BigEndian.Uint16(s.hdr[2:4]))
		case 127:
			length = binary.BigEndian.Uint64(s.hdr[2:10])
		default:
			length = uint64(l)
		}
		s.isClose = s.hdr[0]&0x0f == 0x8
		if op := s.hdr[0] & 0x0f; op <= 0x2 {
			s.midMessage = s.hdr[0]&0x80 == 0
		}
		s.hlen, s.pos, s.pay = 0, 0, s.pay[:0]
		if length == 0 {
			continue
		}
		s.mask = [4]byte{}
		if s.hdr[1]&0x80 != 0 {
			copy(s.mask[:], s.hdr[s.need-4:s.need])
		}
		s.inBody, s.remain = true, length
	}
	return true
}

// atBoundary reports whether the bytes scanned end between two messages.
func (s *closeScan) atBoundary() bool {
	return s.hlen == 0 && !s.inBody && !s.midMessage
}

func (s *closeScan) closeOK() bool {
	return !s.isClose || len(s.pay) <= 2 || utf8.Valid(s.pay[2:])
}
