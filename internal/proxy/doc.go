// Package proxy implements the duplex multi-protocol proxy: one TCP listener
// whose first byte picks the protocol — 0x04 SOCKS4/4a, 0x05 SOCKS5, anything
// else HTTP/1.1 (absolute-form forwarding, CONNECT, and WebSocket upgrade
// pass-through).
//
// Entry points: [New] builds a [Server] from a [Config]; [Server.Serve] runs it
// on a listener the caller owns, [Server.ListenAndServe] listens and serves
// until its ctx is cancelled; [Server.Shutdown] stops it gracefully. The
// server writes one structured access-log line per tunnel or forwarded
// request to [Config.Logger] and keeps counters that [Server.WriteMetrics]
// renders in the Prometheus text format.
//
// Safety by default: destinations on loopback, private, link-local, CGNAT,
// multicast, unspecified and reserved addresses (and IPv6 forms that embed
// such IPv4 addresses) are refused unless [Config.AllowPrivate] or
// [Config.Allow] says otherwise. A name is resolved once, every address is
// checked, and the checked address is the one dialled, so DNS rebinding
// cannot slip past the check.
//
// Tunnels are pumped by two goroutines that hand the kernel socket to socket
// (splice on Linux) once the handshake bytes are drained; half-closes are
// passed through.
//
// What it deliberately does not do: TLS interception, caching, https://
// absolute-form requests (use CONNECT), SOCKS BIND, UDP over upstream
// proxies, and anything about duplex messaging — it imports none of it.
package proxy
