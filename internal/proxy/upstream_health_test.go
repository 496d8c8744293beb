package proxy

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/proxy/check"
	"github.com/duplexhq/duplex/internal/proxy/check/judge"
)

// serveOn runs a duplex proxy on ln until stop is called.
func serveOn(t *testing.T, ln net.Listener) (stop func()) {
	t.Helper()
	s, err := New(Config{Allow: loopback, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-errc; !errors.Is(err, ErrServerClosed) {
			t.Errorf("upstream serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitMetric polls the proxy's metrics until they hold want.
func waitMetric(t *testing.T, p *testProxy, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var b strings.Builder
		p.WriteMetrics(&b)
		if strings.Contains(b.String(), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never showed %q:\n%s", want, b.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the proxy's own probes
	}
}

// TestUpstreamHealth: an upstream that stops carrying is taken out of
// rotation (no client dial tries it), and put back once it carries again.
func TestUpstreamHealth(t *testing.T) {
	checkLeaks(t)
	j := startJudge(t, judge.Config{})
	lnA, _ := net.Listen("tcp", "127.0.0.1:0")
	lnB, _ := net.Listen("tcp", "127.0.0.1:0")
	serveOn(t, lnA)
	stopB := serveOn(t, lnB)
	addrB := lnB.Addr().String()
	upA, _ := url.Parse("http://" + lnA.Addr().String())
	upB, _ := url.Parse("socks5://" + addrB)
	p := startProxy(t, Config{Allow: loopback, Upstreams: []*url.URL{upA, upB},
		UpstreamHealthInterval: 50 * time.Millisecond,
		UpstreamProbe: func(ctx context.Context, tunnel func(ctx context.Context, network, addr string) (net.Conn, error)) error {
			return check.ProbeTunnel(ctx, check.Config{Judge: j.URL, Timeout: time.Second}, tunnel)
		}})
	gaugeB := `duplex_proxy_upstream_up{upstream="socks5://` + addrB + `"} `
	waitMetric(t, p, gaugeB+"1")

	stopB()
	waitMetric(t, p, gaugeB+"0")
	if !strings.Contains(p.log.String(), "upstream stopped carrying") {
		t.Errorf("no log line for the upstream going out:\n%s", p.log.String())
	}
	before := p.metrics.upstreamFailures.Load()
	origin := echoOrigin(t)
	for range 4 { // round-robin would hand every other dial to B
		c, code := httpConnectDial(t, p.addr, origin)
		if code != 200 {
			t.Fatalf("CONNECT through the pool: %d", code)
		}
		c.Close()
	}
	if n := p.metrics.upstreamFailures.Load() - before; n != 0 {
		t.Errorf("%d dials tried the upstream that was out of rotation", n)
	}

	ln, err := net.Listen("tcp", addrB)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, ln)
	waitMetric(t, p, gaugeB+"1")
	if !strings.Contains(p.log.String(), "upstream recovered") {
		t.Errorf("no log line for the upstream coming back:\n%s", p.log.String())
	}
}
