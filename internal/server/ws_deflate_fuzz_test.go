package server

import (
	"net/http"
	"testing"
)

// FuzzDeflateOffer feeds Sec-WebSocket-Extensions values to the
// negotiation: it never panics, what it agrees to is within the RFC's
// bounds, and its own answer, offered back, is agreed to as it stands.
// Seeds: testdata/fuzz/FuzzDeflateOffer.
func FuzzDeflateOffer(f *testing.F) {
	f.Add("permessage-deflate; client_max_window_bits")
	f.Fuzz(func(t *testing.T, offer string) {
		d := negotiateDeflate(http.Header{"Sec-Websocket-Extensions": {offer}})
		if !d.on {
			if d != (wsDeflate{}) {
				t.Fatalf("declined %q with %+v", offer, d)
			}
			return
		}
		if d.windowBits < 8 || d.windowBits > wsMaxWindowBits {
			t.Fatalf("%q: window bits %d", offer, d.windowBits)
		}
		again := negotiateDeflate(http.Header{"Sec-Websocket-Extensions": {d.response()}})
		if again != d {
			t.Fatalf("%q: answer %q negotiates %+v, not %+v", offer, d.response(), again, d)
		}
	})
}
