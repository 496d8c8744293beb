package msg

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzParseCommand: any valid-UTF-8 text frame either ends the connection
// (not a JSON object) or yields a command whose replies are valid JSON
// objects echoing a valid id.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"type":"subscribe","channel":"chat","epoch":"k3v9x2","offset":42}`,
		`{"id":2,"type":"unsubscribe","channel":"chat"}`,
		`{"id":3,"type":"publish","channel":"chat","data":{"text":"hi"}}`,
		`{"id":4,"type":"history","channel":"chat","after":0,"limit":100}`,
		`{"id":"five","type":"ping"}`,
		`{"type":"ping"}`, `{"id":null}`, `{"id":[1],"type":"ping"}`, `{"id":1,"type":7}`,
		`{"id":1,"type":"subscribe","channel":"a","offset":-1}`, `[]`, `"x"`, ` {} `, `{`,
		`{"id":"\u2028","type":"ping"}`, `{"id":1e400,"type":"ping"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) {
			return // the reader closes with 1007 before decoding
		}
		cmd, err := ParseCommand(b)
		if errors.Is(err, ErrNotObject) {
			return
		}
		if len(cmd.ID) > 0 && !ValidCommandID(cmd.ID) {
			t.Fatalf("invalid id %q kept", cmd.ID)
		}
		var replies [][]byte
		if err != nil {
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("error %v is not a *Error", err)
			}
			replies = append(replies, ErrorReply(cmd.ID, err))
		} else {
			if !ValidCommandID(cmd.ID) {
				t.Fatalf("accepted a command without a valid id: %q", b)
			}
			replies = append(replies, PongReply(cmd.ID), OKReply(cmd.ID), ErrorReply(cmd.ID, Errorf(CodeBadRequest, "x %q", b)))
			if ValidChannel(cmd.Channel) {
				replies = append(replies, PositionReply(cmd.ID, cmd.Channel, "e", 1, 2, true))
			}
		}
		for _, r := range replies {
			var v map[string]json.RawMessage
			if err := json.Unmarshal(r, &v); err != nil {
				t.Fatalf("reply %q to %q is not a JSON object: %v", r, b, err)
			}
			if len(cmd.ID) > 0 && string(v["id"]) != string(cmd.ID) {
				t.Fatalf("reply %q does not echo id %q", r, cmd.ID)
			}
		}
	})
}
