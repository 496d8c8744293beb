package proxy

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/proxy/check"
)

// newJudge starts a stand-in for a duplex hub's GET /v1/echo (the hub
// itself lives above this package): the request as JSON, or a raw
// WebSocket echo of text frames.
func newJudge(t *testing.T) *url.URL {
	o := newOrigin(t)
	o.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "remote_addr": r.RemoteAddr, "headers": r.Header})
			return
		}
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: "+base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n")
		br := bufio.NewReader(brw)
		for {
			var h [2]byte
			if _, err := io.ReadFull(br, h[:]); err != nil {
				return
			}
			n := int(h[1] & 0x7f) // short frames only
			var mask [4]byte
			io.ReadFull(br, mask[:])
			p := make([]byte, n)
			if _, err := io.ReadFull(br, p); err != nil {
				return
			}
			for i := range p {
				p[i] ^= mask[i%4]
			}
			c.Write(append([]byte{h[0], byte(n)}, p...))
		}
	})
	u, _ := url.Parse(o.URL + "/v1/echo")
	return u
}

func runCheck(t *testing.T, judge *url.URL, proxy string) check.Result {
	u, err := check.ParseProxy(proxy)
	if err != nil {
		t.Fatal(err)
	}
	return check.Check(context.Background(), check.Config{
		Judge: judge,
		// A proxy that does not speak a protocol often just waits; the
		// timeout is what ends those probes.
		Timeout:     3 * time.Second,
		LookupNetIP: newResolver("judge.test", "127.0.0.1").lookup,
	}, u)
}

func probeOf(r check.Result, proto, transport string) check.Probe {
	for _, p := range r.Probes {
		if p.Protocol == proto && p.Transport == transport {
			return p
		}
	}
	return check.Probe{}
}

func TestCheckDuplex(t *testing.T) {
	checkLeaks(t)
	judge := newJudge(t)
	judge.Host = "judge.test:" + judge.Port()
	res := newResolver("judge.test", "127.0.0.1")
	for _, tc := range []struct {
		cfg  Config
		anon string
		url  func(addr string) string
	}{
		{Config{}, "elite", func(a string) string { return a }},
		{Config{Anonymity: Anonymous}, "anonymous", func(a string) string { return a }},
		{Config{Anonymity: Transparent}, "transparent", func(a string) string { return a }},
		{Config{Credentials: []Credential{{"u", "p"}}}, "elite", func(a string) string { return "socks5://u:p@" + a }},
	} {
		tc.cfg.Allow = loopback
		tc.cfg.LookupNetIP = res.lookup
		p := startProxy(t, tc.cfg)
		r := runCheck(t, judge, tc.url(p.addr))
		for _, pr := range r.Probes {
			wantOK := true
			if len(tc.cfg.Credentials) > 0 && (pr.Protocol == check.ProtoSOCKS4 || pr.Protocol == check.ProtoSOCKS4a) {
				wantOK = false // SOCKS4 carries no password
			}
			if pr.OK != wantOK {
				t.Errorf("%v: %s/%s ok=%v (%s), want %v", tc.cfg.Anonymity, pr.Protocol, pr.Transport, pr.OK, pr.Error, wantOK)
			}
		}
		if got := probeOf(r, check.ProtoHTTP, check.TransportHTTP).Anonymity; got != tc.anon {
			t.Errorf("anonymity %q, want %q", got, tc.anon)
		}
	}
}

// TestCheckReferenceProxies runs the checker against proxies nobody here
// wrote, whose quirks PEERS.md records: tinyproxy strips Upgrade and adds
// Via; dante refuses SOCKS4a.
func TestCheckReferenceProxies(t *testing.T) {
	checkLeaks(t)
	judge := newJudge(t)
	tiny := startTinyproxy(t)
	r := runCheck(t, judge, tiny.addr)
	for _, want := range []struct {
		proto, transport string
		ok               bool
	}{
		{check.ProtoHTTP, check.TransportHTTP, true},
		{check.ProtoHTTP, check.TransportWebSocket, false},
		{check.ProtoConnect, check.TransportHTTP, true},
		{check.ProtoConnect, check.TransportWebSocket, true},
		{check.ProtoSOCKS5, check.TransportHTTP, false},
	} {
		if pr := probeOf(r, want.proto, want.transport); pr.OK != want.ok {
			t.Errorf("tinyproxy %s/%s: ok=%v (%s), want %v", want.proto, want.transport, pr.OK, pr.Error, want.ok)
		}
	}
	// The benchmark configuration turns tinyproxy's Via off.
	if a := probeOf(r, check.ProtoHTTP, check.TransportHTTP).Anonymity; a != "elite" {
		t.Errorf("tinyproxy anonymity %q, want elite (DisableViaHeader)", a)
	}
	dante := startDante(t)
	r = runCheck(t, judge, dante.addr)
	for _, want := range []struct {
		proto string
		ok    bool
	}{
		{check.ProtoSOCKS5, true}, {check.ProtoSOCKS5h, true}, {check.ProtoSOCKS4, true},
		{check.ProtoSOCKS4a, false}, {check.ProtoHTTP, false}, {check.ProtoConnect, false},
	} {
		if r.Works(want.proto) != want.ok {
			t.Errorf("dante %s works=%v, want %v: %+v", want.proto, r.Works(want.proto), want.ok, probeOf(r, want.proto, check.TransportHTTP))
		}
	}
}
