package cli

import (
	"fmt"
	"io"
	"net"
)

// demoChannel is the channel the start message's curl line publishes to:
// the one the README and the demo page (web/static/index.html) use, so a
// new user sees that message arrive on the page.
const demoChannel = "chat"

// printServeStart writes what `duplex serve` says once it listens: where,
// where the demo page is, and one command to try. The first line's
// "listening on http://ADDR" (https:// with TLS) is what scripts and tests
// wait for.
func printServeStart(w io.Writer, addr net.Addr, engine string, withAuth, withTLS bool) {
	scheme := "http://"
	if withTLS {
		scheme = "https://"
	}
	base := scheme + browsable(addr)
	fmt.Fprintf(w, "duplex %s: hub listening on %s%s (engine %s)\n", Version, scheme, addr, engine)
	fmt.Fprintf(w, "  demo page: %s/\n", base)
	if withAuth {
		fmt.Fprintf(w, "  try:       curl -s -X POST -H \"Authorization: Bearer $(duplex token --secret SECRET --publish %s)\" %s/v1/channels/%s/messages -d '{\"text\":\"hi\"}'\n", demoChannel, base, demoChannel)
		return
	}
	fmt.Fprintf(w, "  try:       curl -s -X POST %s/v1/channels/%s/messages -d '{\"text\":\"hi\"}'\n", base, demoChannel)
}

// browsable turns a listening address into one a browser on this machine
// can open: an unspecified host (0.0.0.0, [::]) becomes 127.0.0.1.
func browsable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
