package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/duplexhq/duplex/internal/hub"
	"github.com/duplexhq/duplex/internal/server"
	"github.com/duplexhq/duplex/web"
)

// stringList is a repeatable or comma-separated string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	for p := range strings.SplitSeq(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

func runServe(ctx context.Context, stdio Stdio, args []string) error {
	fs := newFlagSet(stdio, "serve", "[flags]")
	var (
		listen         = fs.String("listen", envOr("DUPLEX_LISTEN", "127.0.0.1:8080"), "address to listen on (env DUPLEX_LISTEN)")
		engineURL      = fs.String("engine", envOr("DUPLEX_ENGINE", "memory"), "engine: memory, redis://host:6379/0, rediss://… or redis+cluster://h1:p1,h2:p2 (env DUPLEX_ENGINE)")
		engineTimeout  = fs.Duration("engine-timeout", 5*time.Second, "longest wait for one engine call (Redis), and for all of a closing session's unsubscribes")
		historySize    = fs.Int("history-size", 1000, "publications kept per channel")
		historyTTL     = fs.Duration("history-ttl", 10*time.Minute, "how long a publication is kept")
		maxMessage     = fs.Int("max-message", 65536, "largest publication data, in bytes of compact JSON")
		maxChannels    = fs.Int("max-channels", 128, "channels per connection")
		queueMessages  = fs.Int("queue-messages", 4096, "outbound queue per connection, in messages (slow consumers are cut)")
		queueBytes     = fs.Int("queue-bytes", 16<<20, "outbound queue per connection, in bytes")
		maxQueuedBytes = fs.Int64("max-queued-bytes", hub.DefaultMaxQueuedBytes, "outbound bytes held for all connections together; past it the largest backlogs are cut as slow consumers (negative: no bound)")
		maxConns       = fs.Int("max-connections", 20000, "connections served at once; one more is answered 503 with Retry-After and closed")
		maxWebSockets  = fs.Int("max-websockets", 0, "WebSocket connections open at once; further upgrades get 503 (0: 90% of --max-connections)")
		writeDelay     = fs.Duration("write-delay", 30*time.Millisecond, "the longest a message to a WebSocket, SSE or NDJSON connection is held for batching while the hub is over --write-budget (0: never hold)")
		writeBudget    = fs.Float64("write-budget", 50000, "hub-wide writes per second to WebSocket, SSE and NDJSON connections past which each connection is written about once per window of up to --write-delay (0: no budget, never hold)")
		wsCompression  = fs.Bool("ws-compression", true, "negotiate permessage-deflate on WebSockets; each publication is compressed once for all its subscribers")
		wsCompressMin  = fs.Int("ws-compression-min", 256, "smallest publication, in bytes of its JSON envelope, sent compressed (0: every size)")
		sseRetry       = fs.Duration("sse-retry", time.Second, "reconnect delay told to SSE clients (retry:)")
		publishRate    = fs.Float64("publish-rate", 1000, "publishes per second per WebSocket connection")
		headerTimeout  = fs.Duration("header-timeout", 10*time.Second, "time to read a request's headers, and with TLS to finish the handshake before them")
		bodyTimeout    = fs.Duration("body-timeout", 10*time.Second, "time to read a whole request body, from the end of its headers; past it: 408 and the connection closed (0: no limit)")
		bodyMinRate    = fs.Int64("body-min-rate", 1024, "slowest average rate a request body may arrive at after its first 2s, in bytes/s; slower: 408 and the connection closed (0: no minimum)")
		idleTimeout    = fs.Duration("idle-timeout", 120*time.Second, "keep-alive idle timeout")
		writeTimeout   = fs.Duration("write-timeout", 10*time.Second, "time a streaming peer has to take one frame")
		heartbeat      = fs.Duration("heartbeat", 15*time.Second, "SSE and NDJSON heartbeat interval")
		pingInterval   = fs.Duration("ping-interval", 25*time.Second, "WebSocket ping interval")
		pollTimeout    = fs.Duration("poll-timeout", 25*time.Second, "default long-poll wait")
		pollMax        = fs.Duration("poll-max-timeout", 60*time.Second, "longest long-poll wait a client may ask")
		allowAnonymous = fs.Bool("allow-anonymous", false, "allow listening on a non-loopback address without --jwt-secret")
		jwtSecret      = fs.String("jwt-secret", envOr("DUPLEX_JWT_SECRET", ""), "HS256 secret; when set every /v1/ endpoint but /v1/echo needs a token (env DUPLEX_JWT_SECRET)")
		logLevel       = fs.String("log-level", "info", "debug, info, warn or error")
		tlsCert        = fs.String("tls-cert", envOr("DUPLEX_TLS_CERT", ""), "PEM certificate (then intermediates) `file`: serve HTTPS and WSS, HTTP/2 by ALPN; reloaded with --tls-key on SIGHUP (env DUPLEX_TLS_CERT)")
		tlsKey         = fs.String("tls-key", envOr("DUPLEX_TLS_KEY", ""), "PEM private key `file` of --tls-cert (env DUPLEX_TLS_KEY)")
		origins        stringList
		presenceGlobs  stringList
		presenceTTL    = fs.Duration("presence-ttl", 60*time.Second, "Redis engine: how long the members of a hub that stopped without a goodbye stay present; they then leave (with leave events)")
	)
	fs.Var(&presenceGlobs, "presence", "keep presence (members, join/leave events) on channels matching this glob, repeated or comma-separated (default: none)")
	fs.Var(&origins, "allowed-origins", "browser origins allowed for WebSocket and CORS, comma-separated or repeated; * for any (default: same origin and localhost)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stdio.Err, &slog.HandlerOptions{Level: level}))

	if !isLoopbackAddr(*listen) && *jwtSecret == "" && !*allowAnonymous {
		return fmt.Errorf("refusing to serve %s without --jwt-secret: anyone who can reach it could publish and read; add --allow-anonymous if that is what you want", *listen)
	}
	tlsConf, err := serveTLS(ctx, logger, *tlsCert, *tlsKey)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	defer ln.Close()

	presenceMatch, err := channelGlobs(presenceGlobs)
	if err != nil {
		return fmt.Errorf("--presence: %w", err)
	}
	if *presenceTTL <= 0 {
		return fmt.Errorf("--presence-ttl must be positive")
	}
	engine, err := newEngine(engineFlags{url: *engineURL, historySize: *historySize, historyTTL: *historyTTL, timeout: *engineTimeout, presenceTTL: *presenceTTL}, logger)
	if err != nil {
		return err
	}
	h, err := hub.New(ctx, hub.Config{
		Engine: engine, Logger: logger, MaxMessage: *maxMessage, MaxChannels: *maxChannels,
		QueueMessages: *queueMessages, QueueBytes: *queueBytes,
		MaxQueuedBytes: *maxQueuedBytes, EngineTimeout: *engineTimeout,
		Presence: presenceMatch,
	})
	if err != nil {
		return err
	}
	srv, err := server.New(server.Config{
		Hub: h, Logger: logger, MaxConnections: *maxConns, ReadHeaderTimeout: *headerTimeout,
		BodyTimeout: orOff(*bodyTimeout), BodyMinRate: orOff(*bodyMinRate),
		IdleTimeout: *idleTimeout, AllowedOrigins: origins, WriteTimeout: *writeTimeout,
		Heartbeat: *heartbeat, PingInterval: *pingInterval, PollTimeout: *pollTimeout,
		PollMaxTimeout: *pollMax, PublishRate: *publishRate, Web: web.Handler(),
		JWTSecret:     []byte(*jwtSecret),
		MaxWebSockets: *maxWebSockets, SSERetry: *sseRetry, WriteDelay: delayOrOff(*writeDelay),
		WriteBudget:     budgetOrOff(*writeBudget),
		NoWSCompression: !*wsCompression, WSCompressionMin: minOrAll(*wsCompressMin),
		Collectors: engineCollectors(engine), TLS: tlsConf,
	})
	if err != nil {
		return err
	}
	printServeStart(stdio.Err, ln.Addr(), engineName(*engineURL), *jwtSecret != "", tlsConf != nil)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	fmt.Fprintln(stdio.Err, "duplex: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// orNone maps 0 (keep nothing) to the engine's "none" value.
func orNone(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// isLoopbackAddr reports whether a listen address host:port can only be
// reached from this machine: a loopback IP or "localhost". An empty host
// means every interface.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// minOrAll maps --ws-compression-min (0: every size) to server.Config's
// (0: the default, negative: every size).
func minOrAll(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

// budgetOrOff maps --write-budget (0: no budget) to server.Config's (0: the
// default; negative: none).
func budgetOrOff(b float64) float64 {
	if b <= 0 {
		return -1
	}
	return b
}

// delayOrOff maps --write-delay (0: off) to server.Config's (0: the
// default, negative: off).
func delayOrOff(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// orOff maps a flag's 0 (no limit) to server.Config's (0: the default,
// negative: no limit).
func orOff[T time.Duration | int64](v T) T {
	if v <= 0 {
		return -1
	}
	return v
}
