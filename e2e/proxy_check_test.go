package e2e

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/proxy/check"
	"github.com/duplexhq/duplex/internal/proxy/check/judge"
)

func TestProxyCheckReferenceProxies(t *testing.T) {
	j, err := judge.Start(context.Background(), judge.Config{Heartbeat: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		j.Close(ctx)
	})
	proxies := map[string]string{"squid": startSquid(t), "tinyproxy": startTinyproxy(t), "dante": startDante(t, danteTCP), "dante-udp": startDante(t, danteUDP)}
	var mu sync.Mutex
	results := map[string]check.Result{}
	var wg sync.WaitGroup
	for name, addr := range proxies {
		tg, err := check.ParseTarget(addr)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			r := check.Check(context.Background(), check.Config{Judge: j.URL, UDPEcho: j.UDPEcho, Timeout: 3 * time.Second, Poll: 3 * time.Second, Deliver: time.Second}, tg)
			mu.Lock()
			results[name] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	// What each really does (docs/proxy.md, "What duplex proxy check
	// finds"): the HTTP proxies forward and CONNECT but pass no Upgrade,
	// so WebSocket only works through CONNECT; squid tells the judge the
	// client's address, tinyproxy adds Via; dante speaks SOCKS4 and 5 but
	// refuses SOCKS4a, and relays UDP only when configured to.
	type expect struct {
		works     []string
		wsForward bool
		anonymity string
		carries   []string
	}
	httpProtos := []string{check.ProtoHTTP, check.ProtoConnect}
	socks := []string{check.ProtoSOCKS4, check.ProtoSOCKS5, check.ProtoSOCKS5h}
	streams := []string{"http", "ws", "sse", "stream", "poll", "hold"}
	want := map[string]expect{
		"squid":     {httpProtos, false, check.Transparent, streams},
		"tinyproxy": {httpProtos, false, check.Anonymous, streams},
		"dante":     {socks, false, "", streams},
		"dante-udp": {append(socks, check.ProtoSOCKS5UDP), false, "", append(streams, "udp")},
	}
	for name, r := range results {
		w := want[name]
		t.Logf("%s: %s", name, r.Verdict)
		for _, p := range r.Protocols {
			if r.Works(p.Protocol) != slices.Contains(w.works, p.Protocol) {
				t.Errorf("%s: %s ok=%v (%s), want %v", name, p.Protocol, p.OK, p.Error, !p.OK)
			}
			for _, x := range p.Transports {
				if p.Protocol == check.ProtoHTTP && x.Transport == check.TransportWebSocket && (x.Status == check.StatusOK) != w.wsForward {
					t.Errorf("%s: WebSocket forwarded %s (%s)", name, x.Status, x.Detail)
				}
			}
		}
		if r.Anonymity != w.anonymity {
			t.Errorf("%s: anonymity %q, want %q", name, r.Anonymity, w.anonymity)
		}
		if !slices.Equal(r.Carries, w.carries) {
			t.Errorf("%s: carries %v, want %v", name, r.Carries, w.carries)
		}
	}
}
