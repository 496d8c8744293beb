// Package check tells which protocols and transports a proxy really
// carries, how fast it sets a tunnel up, and how anonymous it is — the
// engine of `duplex proxy check`.
//
// [Check] probes one proxy address with every protocol duplex's own proxy
// speaks — HTTP forwarding, HTTP CONNECT, SOCKS4, SOCKS4a, SOCKS5 with a
// local address and SOCKS5 with a remote name — whatever scheme the proxy
// was given with, and through each protocol that works tries two
// transports against a judge: a plain request/response GET, and a
// WebSocket upgrade with one echoed message. The judge is an HTTP URL
// that answers a GET with the request as it saw it, in the JSON of a
// duplex hub's GET /v1/echo ({"method","remote_addr","headers"}), and
// echoes WebSocket messages there too; the request headers it reports
// decide the anonymity of the HTTP forward path.
//
// It does not do TLS to the judge, SSE/NDJSON/long-poll transports, or
// bandwidth measurement; it only reports what it saw.
package check
