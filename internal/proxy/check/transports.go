package check

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/duplexhq/duplex/client"
)

// newTunnel is the client package's tunnel dialer: the probes go through
// the code a subscription uses.
func newTunnel(proxyURL string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	return client.ProxyDialer(proxyURL, dial)
}

// transports probes the hub transports through r, all at once.
func (p *prober) transports(ctx context.Context, r route) []TransportResult {
	out := make([]TransportResult, 5)
	var wg sync.WaitGroup
	wg.Go(func() { out[0] = p.websocket(ctx, r) })
	wg.Go(func() { out[1], out[4] = p.subscription(ctx, r, client.SSE) })
	wg.Go(func() { out[2], _ = p.subscription(ctx, r, client.Stream) })
	wg.Go(func() { out[3], _ = p.subscription(ctx, r, client.Poll) })
	wg.Wait()
	return out
}

func failed(tr string, err error) TransportResult {
	return TransportResult{Transport: tr, Status: StatusFailed, Detail: shortErr(err).Error()}
}

// websocket upgrades judge/v1/echo through r (forwarded, for HTTP
// forwarding: the proxy must pass Upgrade on) and echoes two messages,
// so both directions are seen to work after the upgrade.
func (p *prober) websocket(ctx context.Context, r route) TransportResult {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	hc := r.httpClient(nil)
	defer hc.CloseIdleConnections()
	u := *r.judge
	u.Scheme = "ws"
	u.Path += "/v1/echo"
	c, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return TransportResult{Transport: TransportWebSocket, Status: StatusFailed,
				Detail: fmt.Sprintf("no upgrade: the judge answered %s, not 101 (the proxy dropped Upgrade)", resp.Status)}
		}
		return failed(TransportWebSocket, err)
	}
	defer c.CloseNow()
	for _, m := range []string{"duplex-proxy-check 1", "duplex-proxy-check 2"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			return failed(TransportWebSocket, fmt.Errorf("write: %w", err))
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			return failed(TransportWebSocket, fmt.Errorf("read: %w", err))
		}
		if string(got) != m {
			return failed(TransportWebSocket, fmt.Errorf("echo %q, want %q", got, m))
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
	return TransportResult{Transport: TransportWebSocket, Status: StatusOK}
}

// cuts records when a subscription's connections ended.
type cuts struct {
	mu    sync.Mutex // guards times
	times []time.Time
}

func (c *cuts) add() {
	c.mu.Lock()
	c.times = append(c.times, time.Now())
	c.mu.Unlock()
}

// watchedDial wraps dial so that every connection the proxy ends after
// a silence is recorded: net/http retries a request whose reused
// connection was closed before any answer, so a proxy cutting an idle
// keep-alive tunnel would otherwise go unseen.
func (c *cuts) watchedDial(dial func(ctx context.Context, network, addr string) (net.Conn, error), silence time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		w := &watchedConn{Conn: conn, cuts: c, silence: silence}
		w.last.Store(time.Now().UnixNano())
		return w, nil
	}
}

// watchedConn records a cut when a read fails after at least silence
// without bytes either way, unless the conn was closed here first.
type watchedConn struct {
	net.Conn
	cuts    *cuts
	silence time.Duration
	last    atomic.Int64 // unix ns of the last byte read or written
	closed  atomic.Bool
}

func (w *watchedConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if n > 0 {
		w.last.Store(time.Now().UnixNano())
	}
	if err != nil && !w.closed.Load() && time.Since(time.Unix(0, w.last.Load())) >= w.silence {
		w.cuts.add()
	}
	return n, err
}

func (w *watchedConn) Write(p []byte) (int, error) {
	w.last.Store(time.Now().UnixNano())
	return w.Conn.Write(p)
}

func (w *watchedConn) Close() error {
	w.closed.Store(true)
	return w.Conn.Close()
}

// since returns the first cut at or after t.
func (c *cuts) since(t time.Time) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ct := range c.times {
		if !ct.Before(t) {
			return ct, true
		}
	}
	return time.Time{}, false
}

// subscription subscribes with transport t through r and checks that two
// messages published afterwards arrive one by one, each within
// cfg.Deliver. Then it leaves the connection silent for cfg.Poll — for a
// poll, the long poll itself; for SSE the "hold" result — and reports
// whether the proxy cut it.
func (p *prober) subscription(ctx context.Context, r route, t client.Transport) (main, hold TransportResult) {
	name := map[client.Transport]string{client.SSE: TransportSSE, client.Stream: TransportStream, client.Poll: TransportPoll}[t]
	hold = TransportResult{Transport: TransportHold, Status: StatusFailed, Detail: "the stream did not work"}
	cs := &cuts{}
	opts := &client.DialOptions{
		Transport:      t,
		ConnectTimeout: p.cfg.Timeout,
		// Longer than the hold, so that only the proxy can end it.
		ReadTimeout:  p.cfg.Poll + p.cfg.Timeout + 20*time.Second,
		PollTimeout:  p.cfg.Poll,
		MinBackoff:   50 * time.Millisecond,
		MaxBackoff:   time.Second,
		Logger:       slog.New(slog.DiscardHandler),
		OnDisconnect: func(client.Transport, error) { cs.add() },
		Proxy:        "direct",
		Dial:         r.tunnel,
	}
	if r.forward != nil {
		opts.Proxy, opts.Dial = r.forward.String(), p.cfg.Dial
	}
	opts.Dial = cs.watchedDial(opts.Dial, min(p.cfg.Deliver/2, time.Second))
	c, err := client.Dial(ctx, r.judge.String(), opts)
	if err != nil {
		return failed(name, err), hold
	}
	defer c.Close()
	pub, err := client.Dial(ctx, p.cfg.Judge.String(), &client.DialOptions{Transport: client.Poll, Proxy: "direct", RequestTimeout: p.cfg.Timeout, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return failed(name, fmt.Errorf("judge: %w", err)), hold
	}
	defer pub.Close()

	ch := newChannel()
	sctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	sub, err := c.Subscribe(sctx, []string{ch}, nil)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && t != client.Poll {
			return TransportResult{Transport: name, Status: StatusBuffered,
				Detail: fmt.Sprintf("the stream's first event did not arrive within %v", p.cfg.Timeout)}, hold
		}
		return failed(name, err), hold
	}
	defer sub.Close()

	deliver := func(i int) (time.Duration, error) {
		want := fmt.Sprintf(`"duplex-proxy-check %d"`, i)
		start := time.Now()
		if _, err := pub.Publish(ctx, ch, json.RawMessage(want)); err != nil {
			return 0, fmt.Errorf("publish at the judge: %w", err)
		}
		nctx, cancel := context.WithTimeout(ctx, p.cfg.Deliver)
		defer cancel()
		ev, err := sub.Next(nctx)
		if err != nil {
			return 0, err
		}
		if ev.Message == nil || strings.TrimSpace(string(ev.Message.Data)) != want {
			return 0, fmt.Errorf("got %+v, want message %s", ev, want)
		}
		return time.Since(start), nil
	}
	for i := 1; i <= 2; i++ {
		if _, err := deliver(i); err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				st := StatusBuffered
				if t == client.Poll {
					st = StatusFailed
				}
				return TransportResult{Transport: name, Status: st,
					Detail: fmt.Sprintf("message %d, published after the stream opened, did not arrive within %v", i, p.cfg.Deliver)}, hold
			}
			return failed(name, err), hold
		}
	}
	main = TransportResult{Transport: name, Status: StatusOK}
	if t == client.Stream {
		return main, hold
	}

	// The silence: a poll's wait ends at cfg.Poll with the hub's empty
	// answer; a margin lets it come back.
	start := time.Now()
	wait := p.cfg.Poll
	if t == client.Poll {
		wait += min(p.cfg.Deliver, p.cfg.Timeout)
	}
	timer := time.NewTimer(wait)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
		return failed(name, ctx.Err()), hold
	}
	held := TransportResult{Transport: TransportHold, Status: StatusOK}
	if t == client.Poll {
		held.Transport = TransportPoll
	}
	if at, cut := cs.since(start); cut {
		held.Status = StatusCut
		held.Detail = fmt.Sprintf("cut after %.1fs of silence (held for %v)", at.Sub(start).Seconds(), p.cfg.Poll)
	} else if _, err := deliver(3); err != nil {
		held.Status = StatusFailed
		held.Detail = fmt.Sprintf("after %v of silence: %v", p.cfg.Poll, shortErr(err))
	}
	if t == client.Poll {
		return held, hold
	}
	return main, held
}
