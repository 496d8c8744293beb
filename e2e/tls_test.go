package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/tlstest"
)

// servedSerial handshakes with addr, trusting ca, and returns the serial
// number of the certificate the hub served.
func servedSerial(t *testing.T, addr string, ca *tlstest.CA) *big.Int {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// waitLog waits until the hub has logged a line holding every one of want.
func waitLog(t *testing.T, h *hubProc, want ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for line := range strings.SplitSeq(h.Log(), "\n") {
			all := true
			for _, w := range want {
				all = all && strings.Contains(line, w)
			}
			if all {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // polling the log for the condition
	}
	t.Fatalf("hub never logged %q:\n%s", want, h.Log())
}

// countedSub is a subscription whose client counts its TCP connections and
// its disconnects, so a test can tell that it never reconnected.
type countedSub struct {
	sub          *client.Subscription
	dials, drops atomic.Int32
}

func subscribeCounted(t *testing.T, ctx context.Context, url string, tr client.Transport, ca *tlstest.CA, channel string) *countedSub {
	t.Helper()
	cs := &countedSub{}
	d := &net.Dialer{}
	c, err := client.Dial(ctx, url, &client.DialOptions{
		Transport: tr, Proxy: "direct", TLSConfig: &tls.Config{RootCAs: ca.Pool()},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			cs.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		OnDisconnect: func(client.Transport, error) { cs.drops.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if cs.sub, err = c.Subscribe(ctx, []string{channel}, nil); err != nil {
		t.Fatal(err)
	}
	return cs
}

func (cs *countedSub) expect(t *testing.T, ctx context.Context, data string) {
	t.Helper()
	ev, err := cs.sub.Next(ctx)
	if err != nil || ev.Message == nil || string(ev.Message.Data) != data {
		t.Fatalf("%s subscription: %+v, %v; want message %s", cs.sub.Transport(), ev, err, data)
	}
}

// TestTLSReloadOnSIGHUP: a `duplex serve --tls-cert --tls-key` child
// process reloads its pair on SIGHUP. New handshakes then get the new
// certificate, while an SSE stream and a WebSocket opened before the
// reload go on delivering on their first connection; a bad new pair (a
// key that is not the certificate's) is logged and the old one kept.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	certFile, keyFile := ca.Issue(t, 2).Write(t, dir)
	h := startHubProc(t, "tls", "memory", "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(h.URL, "https://") {
		t.Fatalf("hub URL %s, want https://", h.URL)
	}
	if s := servedSerial(t, h.Addr, ca); s.Int64() != 2 {
		t.Fatalf("serving serial %s, want 2", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ch = "reload"
	subs := []*countedSub{
		subscribeCounted(t, ctx, h.URL, client.SSE, ca, ch),
		subscribeCounted(t, ctx, h.URL, client.WebSocket, ca, ch),
	}
	pub, err := client.Dial(ctx, h.URL, &client.DialOptions{Transport: client.Poll, Proxy: "direct", TLSConfig: &tls.Config{RootCAs: ca.Pool()}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	round := func(data string) {
		t.Helper()
		if _, err := pub.Publish(ctx, ch, json.RawMessage(data)); err != nil {
			t.Fatal(err)
		}
		for _, s := range subs {
			s.expect(t, ctx, data)
		}
	}
	round(`"before"`)
	var dialed []int32 // each subscription's connections before the reloads
	for _, s := range subs {
		dialed = append(dialed, s.dials.Load())
	}

	// A good new pair.
	next := ca.Issue(t, 3)
	next.Write(t, dir)
	if err := syscall.Kill(h.PID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, h, "TLS certificate reloaded", "serial=3")
	if s := servedSerial(t, h.Addr, ca); s.Int64() != 3 {
		t.Fatalf("after the reload serving serial %s, want 3", s)
	}
	pub.Close() // the next publishes come on a new connection, under the new certificate
	if pub, err = client.Dial(ctx, h.URL, &client.DialOptions{Transport: client.Poll, Proxy: "direct", TLSConfig: &tls.Config{RootCAs: ca.Pool()}}); err != nil {
		t.Fatal(err)
	}
	round(`"after"`)

	// A bad new pair: serial 4's certificate with serial 3's key.
	bad := ca.Issue(t, 4)
	bad.KeyPEM = next.KeyPEM
	bad.Write(t, dir)
	if err := syscall.Kill(h.PID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, h, "TLS certificate reload failed", "serial=3")
	if s := servedSerial(t, h.Addr, ca); s.Int64() != 3 {
		t.Fatalf("after a bad reload serving serial %s, want 3 still", s)
	}
	round(`"after the bad pair"`)

	for i, s := range subs {
		if d, dr := s.dials.Load()-dialed[i], s.drops.Load(); d != 0 || dr != 0 {
			t.Errorf("%s subscription: %d new connections, %d disconnects across the reloads; want none", s.sub.Transport(), d, dr)
		}
	}
}

// TestTLSCLIAndPeers: `duplex pub --ca` and `duplex sub --ca` talk to an
// https hub over WebSocket and SSE, and python3-websockets runs its whole
// session over wss:// trusting the test CA (SSL_CERT_FILE).
func TestTLSCLIAndPeers(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t)
	caFile := ca.WriteCA(t, dir)
	certFile, keyFile := ca.Issue(t, 2).Write(t, dir)
	h := startHubProc(t, "tls", "memory", "--tls-cert", certFile, "--tls-key", keyFile)
	bin := builtDuplex(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for _, tr := range []string{"ws", "sse"} {
		t.Run(tr, func(t *testing.T) {
			ch := "cli-" + tr
			out, err := exec.CommandContext(ctx, bin, "pub", "--url", h.URL, "--ca", caFile, ch, `{"via":"`+tr+`"}`).Output()
			if err != nil {
				t.Fatalf("duplex pub --ca: %v\n%s", err, stderrOf(err))
			}
			pos := strings.TrimSpace(string(out)) // channel:epoch:offset
			parts := strings.Split(pos, ":")
			if len(parts) != 3 || parts[2] != "1" {
				t.Fatalf("duplex pub printed %q", out)
			}
			cursor := ch + ":" + parts[1] + ":0"
			out, err = exec.CommandContext(ctx, bin, "sub", "--url", h.URL, "--ca", caFile, "--transport", tr,
				"--cursor", cursor, "--count", "1", ch).Output()
			if err != nil {
				t.Fatalf("duplex sub --ca: %v\n%s", err, stderrOf(err))
			}
			if !strings.Contains(string(out), `{"via":"`+tr+`"}`) {
				t.Fatalf("duplex sub --ca printed %q", out)
			}
		})
	}

	t.Run("no CA", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, bin, "sub", "--url", h.URL, "--transport", "ws", "--count", "1", "x").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "certificate") {
			t.Fatalf("duplex sub without --ca: %v, %q; want a certificate error", err, out)
		}
	})

	t.Run("bench publish", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, bin, "bench", "publish", "--url", h.URL, "--ca", caFile, "--client", "net/http",
			"--publishers", "2", "--warmup", "0", "--count", "20", "--json").Output()
		if err != nil {
			t.Fatalf("duplex bench publish --ca: %v\n%s", err, stderrOf(err))
		}
		var report struct {
			Publish []struct {
				Ops, Errors int64
			}
		}
		if err := json.Unmarshal(out, &report); err != nil || len(report.Publish) != 1 || report.Publish[0].Ops < 20 || report.Publish[0].Errors != 0 {
			t.Fatalf("bench report %s (%v): want one run of 20 publishes or more, no errors", out, err)
		}
	})

	t.Run("python-websockets", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, "/usr/bin/python3", "python/ws_client.py", "wss://"+h.Addr+"/v1/ws", "py", "0")
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+caFile)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ws_client.py over wss: %v\n%s", err, stderrOf(err))
		}
		var r wsPeerReport
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("report %q: %v", out, err)
		}
		if r.Protocol != "duplex.v1" || r.Subscribe.Type != "ok" || len(r.Messages) != 20 || r.Pong.Type != "pong" {
			t.Fatalf("python-websockets over wss: %s", fmt.Sprint(r))
		}
	})
}
