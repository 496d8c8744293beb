package proxy

import (
	"bytes"
	"io"
	"testing"
)

// TestSOCKS5MethodSelection: without --auth the only acceptable method is
// "no authentication"; a client offering only username/password gets 0xFF
// and a closed connection (RFC 1928 §3). The same greetings go to a real
// dante with no password method configured, which must answer alike: the
// test holds duplex to the reference server, not to its own reading of the
// RFC. With --auth only username/password is acceptable.
func TestSOCKS5MethodSelection(t *testing.T) {
	checkLeaks(t)
	open := startProxy(t, Config{Allow: loopback})
	authed := startProxy(t, Config{Allow: loopback, Credentials: []Credential{{"u", "p"}}})
	dante := startDante(t)
	cases := []struct {
		name     string
		greeting []byte
		want     byte // the method chosen
	}{
		{"password only", []byte{5, 1, methodPassword}, methodNoAccept},
		{"none and password", []byte{5, 2, methodNone, methodPassword}, methodNone},
		{"password and none", []byte{5, 2, methodPassword, methodNone}, methodNone},
		{"none only", []byte{5, 1, methodNone}, methodNone},
		{"GSSAPI only", []byte{5, 1, 0x01}, methodNoAccept},
	}
	for _, server := range []struct{ name, addr string }{{"duplex", open.addr}, {"dante", dante.addr}} {
		for _, tc := range cases {
			t.Run(server.name+"/"+tc.name, func(t *testing.T) {
				got := greet(t, server.addr, tc.greeting)
				if want := []byte{5, tc.want}; !bytes.Equal(got, want) {
					t.Fatalf("greeting % x: answer % x, want % x", tc.greeting, got, want)
				}
			})
		}
	}
	for _, tc := range []struct {
		name     string
		greeting []byte
		want     byte
	}{
		{"password only", []byte{5, 1, methodPassword}, methodPassword},
		{"none and password", []byte{5, 2, methodNone, methodPassword}, methodPassword},
		{"none only", []byte{5, 1, methodNone}, methodNoAccept},
	} {
		t.Run("duplex --auth/"+tc.name, func(t *testing.T) {
			if got := greet(t, authed.addr, tc.greeting); !bytes.Equal(got, []byte{5, tc.want}) {
				t.Fatalf("greeting % x: answer % x, want 05 %02x", tc.greeting, got, tc.want)
			}
		})
	}
}

// greet sends a SOCKS5 greeting and returns the two-byte answer. After
// 0xFF it checks that the server closes the connection, and that it does
// not read credentials sent anyway as if it had chosen a method.
func greet(t *testing.T, addr string, greeting []byte) []byte {
	t.Helper()
	c := dialProxy(t, addr)
	if _, err := c.Write(greeting); err != nil {
		t.Fatal(err)
	}
	ans := make([]byte, 2)
	if _, err := io.ReadFull(c, ans); err != nil {
		t.Fatalf("greeting % x: %v", greeting, err)
	}
	if ans[1] == methodNoAccept {
		c.Write([]byte{1, 1, 'u', 1, 'p'}) // as a client that ignores the answer
		if n, err := c.Read(make([]byte, 16)); err == nil {
			t.Fatalf("greeting % x: after 0xFF the server answered %d more bytes, want the connection closed", greeting, n)
		}
	}
	return ans
}
