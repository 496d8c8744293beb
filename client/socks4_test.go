package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestSocks4RequestLayout(t *testing.T) {
	lookup := func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host == "hub.test" {
			return []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("10.1.2.3")}, nil
		}
		return nil, errors.New("no such host")
	}
	for _, tc := range []struct {
		name      string
		remoteDNS bool
		user      string
		addr      string
		want      []byte
		err       string
	}{
		{"socks4 ip", false, "bob", "127.0.0.1:8080", []byte{4, 1, 0x1f, 0x90, 127, 0, 0, 1, 'b', 'o', 'b', 0}, ""},
		{"socks4 name resolved here", false, "", "hub.test:80", []byte{4, 1, 0, 80, 10, 1, 2, 3, 0}, ""},
		{"socks4a name sent", true, "u", "hub.test:443", append([]byte{4, 1, 1, 0xbb, 0, 0, 0, 1, 'u', 0}, "hub.test\x00"...), ""},
		{"socks4a ip literal", true, "", "10.0.0.9:1", []byte{4, 1, 0, 1, 10, 0, 0, 9, 0}, ""},
		{"ipv6", false, "", "[::1]:80", nil, "IPv6"},
		{"no v4", false, "", "v6only.test:80", nil, "no such host"},
		{"port 0", true, "", "x:0", nil, "invalid port"},
		{"nul in user", true, "a\x00b", "x:1", nil, "NUL"},
	} {
		d := &socks4Dialer{user: tc.user, remoteDNS: tc.remoteDNS, lookup: lookup}
		got, err := d.request(context.Background(), tc.addr)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: % x, %v; want % x", tc.name, got, err, tc.want)
		}
	}
}

// TestSocks4Replies runs the dialer against a listener that answers each
// request with fixed reply bytes.
func TestSocks4Replies(t *testing.T) {
	checkLeaks(t)
	for _, tc := range []struct {
		reply []byte
		err   string
	}{
		{[]byte{0, 90, 0, 0, 0, 0, 0, 0}, ""},
		{[]byte{0, 91, 0, 0, 0, 0, 0, 0}, "rejected or failed (91)"},
		{[]byte{0, 92, 0, 0, 0, 0, 0, 0}, "identd"},
		{[]byte{5, 0, 0, 0, 0, 0, 0, 0}, "not a SOCKS4 proxy"},
		{[]byte{0, 90}, "closed the connection during the handshake"},
		{nil, "deadline exceeded"}, // says nothing
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, 9)
			io.ReadFull(c, buf)
			if tc.reply == nil {
				io.Copy(io.Discard, c) // until the client gives up
				return
			}
			c.Write(tc.reply)
		}()
		var nd net.Dialer
		d := &socks4Dialer{proxyAddr: ln.Addr().String(), dial: nd.DialContext}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		conn, err := d.DialContext(ctx, "tcp", "127.0.0.1:9")
		cancel()
		if tc.err == "" {
			if err != nil {
				t.Errorf("granted: %v", err)
			} else {
				conn.Close()
			}
		} else {
			var oe *net.OpError
			if err == nil || !errors.As(err, &oe) || oe.Op != "socks4" || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("reply % x: error %v, want *net.OpError mentioning %q", tc.reply, err, tc.err)
			}
		}
		ln.Close()
		<-done
	}
}
