package redis

import (
	"encoding/json"
	"testing"

	"github.com/duplexhq/duplex/msg"
)

// FuzzDecodePresence: any pub/sub payload beginning with "!" is a join or
// leave whose encoding is valid JSON with a valid client id, or an error
// (the engine drops it): the store may hold anything.
func FuzzDecodePresence(f *testing.F) {
	for _, s := range []string{
		`!j {"client":"c1","user":"ann","transport":"ws","joined":1,"info":{"a":1}}`,
		`!l {"client":"c1","user":"","transport":"sse","joined":2,"info":null}`,
		`!x {}`, `!j `, `!j {"client":"bad id"}`, `!j {"client":"c","info":"\ud800"}`, "!j {\"client\":\"c\",\"user\":\"\xff\"}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		ev, err := decodePresence("room", payload)
		if err != nil {
			return
		}
		if !json.Valid(ev.JSON) || !msg.ValidClientID(ev.Client) || (ev.Type != msg.TypeJoin && ev.Type != msg.TypeLeave) {
			t.Fatalf("%q decoded to %s", payload, ev.JSON)
		}
	})
}
