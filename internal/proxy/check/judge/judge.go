// Package judge runs the judge of `duplex proxy check` in-process: a
// duplex hub (memory engine) on loopback, whose GET /v1/echo reports the
// request as it arrived, plus a UDP echo for the SOCKS5 UDP ASSOCIATE
// probe. Being on loopback, it only suits proxies on the same machine: a
// remote proxy cannot reach it. It does not serve the web client.
package judge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/duplexhq/duplex/internal/engine/memory"
	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/server"
)

// Judge is a running judge. Close stops it.
type Judge struct {
	// URL is the hub's base URL, http://127.0.0.1:port.
	URL *url.URL
	// UDPEcho is the ip:port of the UDP echo.
	UDPEcho string

	srv   *server.Server
	udp   *net.UDPConn
	wg    sync.WaitGroup
	serve error
}

// Config configures a judge. The zero value is the hub's defaults.
type Config struct {
	// Heartbeat is the hub's SSE and NDJSON keep-alive interval: a
	// stream is silent this long at most, so a proxy's idle timeout
	// shorter than it cuts a held stream. Zero means the hub's 15s.
	Heartbeat time.Duration
}

// Start starts a judge on 127.0.0.1 with ports the system picks.
func Start(ctx context.Context, cfg Config) (*Judge, error) {
	hb, err := hub.New(ctx, hub.Config{Engine: memory.New(memory.Config{})})
	if err != nil {
		return nil, err
	}
	srv, err := server.New(server.Config{Hub: hb, Heartbeat: cfg.Heartbeat})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Shutdown(ctx)
		return nil, fmt.Errorf("judge: %w", err)
	}
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		ln.Close()
		srv.Shutdown(ctx)
		return nil, fmt.Errorf("judge: %w", err)
	}
	j := &Judge{URL: &url.URL{Scheme: "http", Host: ln.Addr().String()}, UDPEcho: uc.LocalAddr().String(), srv: srv, udp: uc}
	j.wg.Go(func() { j.serve = srv.Serve(ln) })
	j.wg.Go(j.echoUDP)
	return j, nil
}

// echoUDP sends every datagram back to where it came from.
func (j *Judge) echoUDP() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := j.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		j.udp.WriteToUDPAddrPort(buf[:n], from)
	}
}

// Close stops the hub (within ctx) and the UDP echo, and waits for them.
func (j *Judge) Close(ctx context.Context) error {
	err := j.srv.Shutdown(ctx)
	j.udp.Close()
	j.wg.Wait()
	if j.serve != nil && !errors.Is(j.serve, http.ErrServerClosed) {
		err = errors.Join(err, j.serve)
	}
	return err
}
