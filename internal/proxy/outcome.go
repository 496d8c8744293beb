package proxy

// outcome is how a tunnel or forwarded request ended: the access log's
// "outcome" and the outcome label of duplex_proxy_requests_total. The set
// is closed (a typed enum, not free strings), so the metric's label values
// are known in advance and every value is in docs/proxy.md.
type outcome uint8

const (
	outcomeOK outcome = iota // finished normally

	// Before a destination is known.
	outcomeBadRequest          // malformed request or handshake
	outcomeHandshakeTimeout    // the handshake did not arrive in time
	outcomeAuthRequired        // no credentials where they are required
	outcomeAuthFailed          // wrong credentials
	outcomeCommandNotSupported // a SOCKS command this proxy does not serve
	outcomeMaxConns            // refused: Config.MaxConns, the server is full
	outcomeMaxConnsPerClient   // refused: Config.MaxConnsPerClient for this client IP

	// Dialling the destination (failure.outcome).
	outcomeForbidden          // the ACL refused the destination
	outcomeResolveFailed      // the name did not resolve
	outcomeConnectionRefused  // the destination refused
	outcomeNetworkUnreachable // no route to the network
	outcomeHostUnreachable    // no route to the host
	outcomeDialTimeout        // the dial timed out
	outcomeUpstreamFailed     // every upstream proxy failed
	outcomeBadAddress         // malformed host or port
	outcomeDialFailed         // any other dial error
	outcomeUDPListenFailed    // SOCKS5 UDP ASSOCIATE could not listen

	// Relaying.
	outcomeClientClosed      // the client could not be written to
	outcomeIdleTimeout       // nothing moved for IdleTimeout
	outcomeStalled           // one side stopped taking bytes
	outcomeClosed            // a side closed with an error
	outcomeOriginWriteFailed // the request could not be written to the origin
	outcomeOriginFailed      // the origin's answer was missing or malformed
	outcomeStreamFailed      // the response body broke off
	outcomeClientBodyFailed  // the request body broke off
)

var outcomeNames = [...]string{
	outcomeOK:                  "ok",
	outcomeBadRequest:          "bad_request",
	outcomeHandshakeTimeout:    "handshake_timeout",
	outcomeAuthRequired:        "auth_required",
	outcomeAuthFailed:          "auth_failed",
	outcomeCommandNotSupported: "command_not_supported",
	outcomeMaxConns:            "max_conns",
	outcomeMaxConnsPerClient:   "max_conns_per_client",
	outcomeForbidden:           "forbidden",
	outcomeResolveFailed:       "resolve_failed",
	outcomeConnectionRefused:   "connection_refused",
	outcomeNetworkUnreachable:  "network_unreachable",
	outcomeHostUnreachable:     "host_unreachable",
	outcomeDialTimeout:         "dial_timeout",
	outcomeUpstreamFailed:      "upstream_failed",
	outcomeBadAddress:          "bad_address",
	outcomeDialFailed:          "dial_failed",
	outcomeUDPListenFailed:     "udp_listen_failed",
	outcomeClientClosed:        "client_closed",
	outcomeIdleTimeout:         "idle_timeout",
	outcomeStalled:             "stalled",
	outcomeClosed:              "closed",
	outcomeOriginWriteFailed:   "origin_write_failed",
	outcomeOriginFailed:        "origin_failed",
	outcomeStreamFailed:        "stream_failed",
	outcomeClientBodyFailed:    "client_body_failed",
}

// String is the outcome as the log and the metric spell it.
func (o outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}
