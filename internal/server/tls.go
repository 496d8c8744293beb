package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
)

// HTTPS and WSS share the one listener.
//
// With Config.TLS set, Serve puts a TLS layer over the connection cap
// (listener.go), so the cap counts TCP connections and a refusal speaks
// TLS (HTTP/1.1 only) before it answers 503. net/http then offers HTTP/2
// by ALPN ("h2", then "http/1.1"): SSE, NDJSON, long polls and REST
// requests share one connection per client, each a stream of its own, and
// a browser is not held to six connections an origin. WebSocket stays on
// HTTP/1.1: the client's handshake connection offers only http/1.1, and
// WebSocket over HTTP/2 (RFC 8441 extended CONNECT) is not supported:
// net/http does not advertise it (it is off unless GODEBUG=http2xconnect=1,
// golang/go#71128) and coder/websocket accepts only an HTTP/1.1 GET that
// it can hijack (docs/protocol.md, "TLS and HTTP/2"). There is no h2c.
//
// The handshake is bounded by Config.ReadHeaderTimeout: net/http sets the
// shortest of its read-header, read and write timeouts as the deadline of
// the handshake, and this server sets only the first. A connection that
// never sends its ClientHello so holds a connection slot for at most that
// long.

// tlsConfig is the configuration Serve hands net/http: the caller's, with
// TLS 1.2 as the oldest version unless the caller chose one. net/http adds
// "h2" and "http/1.1" to its NextProtos.
func tlsConfig(c *tls.Config) *tls.Config {
	c = c.Clone()
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

// refusalTLS is the configuration refusals (listener.go) handshake with:
// their canned answer is HTTP/1.1, so that is all they offer.
func refusalTLS(c *tls.Config) *tls.Config {
	c = c.Clone()
	c.NextProtos = []string{"http/1.1"}
	return c
}

// serveTLS serves ln (the capped listener) over TLS.
func (s *Server) serveTLS(ln net.Listener) error {
	s.http.TLSConfig = tlsConfig(s.cfg.TLS)
	return s.http.ServeTLS(ln, "", "")
}

// dropConnectionClose removes the "Connection: close" a streaming response
// sets for HTTP/1.x (stream.go, streamHeaders) from an HTTP/2 one, where
// net/http would take it to mean "send GOAWAY": the client's other streams
// on the connection (its publishes, its other subscriptions) would have to
// move to a new connection. An HTTP/2 stream's write deadline is its own,
// so the reason for the header does not carry over.
func dropConnectionClose(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor >= 2 {
		w.Header().Del("Connection")
	}
}

// KeyPair is a certificate and its key, loaded from PEM files, that can be
// reloaded while connections use it: Reload swaps the pair atomically, so
// handshakes under way and connections already open keep the one they
// have, and new handshakes get the new one. Set GetCertificate as a
// tls.Config's GetCertificate. Its methods may be called from any
// goroutine.
type KeyPair struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadKeyPair loads the pair from certFile (the certificate, then any
// intermediates) and keyFile.
func LoadKeyPair(certFile, keyFile string) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile}
	if err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload reads the files again. On any error (a file missing or
// malformed, a key that does not match the certificate) it keeps the pair
// it has and returns the error.
func (k *KeyPair) Reload() error {
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s and key %s: %w", k.certFile, k.keyFile, err)
	}
	if c.Leaf == nil {
		return errors.New("load TLS certificate: no leaf certificate")
	}
	k.cur.Store(&c)
	return nil
}

// Leaf returns the certificate being served.
func (k *KeyPair) Leaf() *x509.Certificate { return k.cur.Load().Leaf }

// GetCertificate returns the pair being served, for tls.Config.
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.cur.Load(), nil
}
