package server

import (
	"encoding/binary"
	"testing"
)

// wsClientFrame builds a masked client frame.
func wsClientFrame(opcode byte, payload []byte, mask [4]byte) []byte {
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

func TestCloseScan(t *testing.T) {
	m := [4]byte{1, 2, 3, 4}
	text := wsClientFrame(1, make([]byte, 70000), m)
	for _, tc := range []struct {
		name   string
		stream []byte
		ok     bool
	}{
		{"text then good close", append(append([]byte{}, text...), wsClientFrame(8, []byte("\x03\xe8bye ✓"), m)...), true},
		{"bad close reason", append(append([]byte{}, text...), wsClientFrame(8, []byte("\x03\xe8\xed\xa0\x80"), m)...), false},
		{"close without reason", wsClientFrame(8, []byte("\x03\xe8"), m), true},
		{"empty close", wsClientFrame(8, nil, m), true},
		{"bad bytes in a text frame are not its business", wsClientFrame(1, []byte("\xff\xff\xff"), m), true},
	} {
		// Whole, and one byte at a time: the same answer.
		var whole closeScan
		if got := whole.scan(tc.stream); got != tc.ok {
			t.Errorf("%s: scan whole = %v, want %v", tc.name, got, tc.ok)
		}
		var bytewise closeScan
		got := true
		for i := range tc.stream {
			if !bytewise.scan(tc.stream[i : i+1]) {
				got = false
				break
			}
		}
		if got != tc.ok {
			t.Errorf("%s: scan bytewise = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// FuzzWSCloseScan: any byte stream, however it is split into reads, gives
// the same verdict and ends at the same message boundary (what the epoll
// reader parks on), and scanning never panics.
func FuzzWSCloseScan(f *testing.F) {
	m := [4]byte{9, 8, 7, 6}
	f.Add(wsClientFrame(8, []byte("\x03\xe8\xed\xa0\x80"), m), uint8(3))
	f.Add(append(wsClientFrame(1, []byte("hello"), m), wsClientFrame(8, []byte("\x03\xe8ok"), m)...), uint8(1))
	f.Add([]byte{0x88, 0x7f, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, uint8(5))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		n := int(step%16) + 1
		var whole, split closeScan
		want := whole.scan(stream)
		got := true
		for i := 0; i < len(stream) && got; i += n {
			got = split.scan(stream[i:min(i+n, len(stream))])
		}
		if got != want {
			t.Fatalf("split by %d: %v, whole: %v", n, got, want)
		}
		if got && whole.atBoundary() != split.atBoundary() {
			t.Fatalf("split by %d: at a message boundary %v, whole: %v", n, split.atBoundary(), whole.atBoundary())
		}
		if len(whole.pay) > 125 {
			t.Fatalf("kept %d close payload bytes", len(whole.pay))
		}
	})
}

func TestCloseScanBoundary(t *testing.T) {
	m := [4]byte{1, 2, 3, 4}
	first := wsClientFrame(1, []byte(`{"id":`), m)
	first[0] &^= 0x80 // not final
	ping := wsClientFrame(9, []byte("p"), m)
	last := wsClientFrame(0, []byte(`1}`), m)
	var s closeScan
	steps := []struct {
		b    []byte
		want bool
	}{
		{first[:1], false}, // inside a header
		{first[1:], false}, // a message begun
		{ping, false},      // a control frame inside it
		{last[:3], false},
		{last[3:], true}, // the message is complete
		{wsClientFrame(9, nil, m), true},
	}
	for i, st := range steps {
		if !s.scan(st.b) {
			t.Fatalf("step %d: scan failed", i)
		}
		if got := s.atBoundary(); got != st.want {
			t.Fatalf("step %d: atBoundary = %v, want %v", i, got, st.want)
		}
	}
}
