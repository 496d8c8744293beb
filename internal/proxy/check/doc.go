// Package check tells what a proxy really carries for a real-time app —
// the engine of `duplex proxy check` and of the upstream health checks of
// `duplex proxy`.
//
// [ParseList] and [ParseTarget] read proxies ("scheme://[user:pass@]host:port"
// or "[user:pass@]host:port" for every protocol). [Check] probes one: each
// protocol of its scheme (HTTP forwarding, CONNECT, SOCKS4, SOCKS4a,
// SOCKS5, SOCKS5 with remote DNS, SOCKS5 UDP ASSOCIATE) with a GET of the
// judge's /v1/echo, timing the connect and the first answer byte; then,
// through each protocol that works, every hub transport — a WebSocket
// echo both ways, SSE and NDJSON streams that must deliver messages
// published after they opened one by one (else "buffered"), a long poll
// and a silent stream held Config.Poll long (else "cut") — and the
// anonymity of the forwarding path from the headers the judge saw. The
// [Result] names the communication models the proxy can carry.
// [ProbeTunnel] is the part that health-checks an upstream.
//
// The judge is a duplex hub (package judge runs one in-process, with a UDP
// echo). The probes go through the client package's tunnel dialers and
// subscriptions and coder/websocket; only UDP ASSOCIATE is written here.
// It does not do TLS to proxies or the judge, or measure bandwidth.
package check
