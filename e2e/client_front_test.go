package e2e

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpFront relays TCP connections to a target (a hub) and can cut them:
// all at once (a dropped connection), or every WebSocket right after its
// 101 answer went through (a transport that opens and then dies).
type tcpFront struct {
	ln     net.Listener
	target string
	// cutUpgrades, when set, closes a connection right after relaying an
	// "HTTP/1.1 101" answer head.
	cutUpgrades atomic.Bool
	upgrades    atomic.Int64 // 101 answers seen

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	// relayed gets a token whenever a connection starts being relayed.
	relayed chan struct{}
}

func startTCPFront(t *testing.T, target string) *tcpFront {
	t.Helper()
	return startTLSFront(t, target, nil)
}

// startTLSFront is a tcpFront that terminates TLS with cfg (an https://
// hub), or plain TCP with cfg nil.
func startTLSFront(t *testing.T, target string, cfg *tls.Config) *tcpFront {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	f := &tcpFront{ln: ln, target: target, conns: make(map[net.Conn]struct{}), relayed: make(chan struct{}, 1)}
	f.wg.Go(f.accept)
	t.Cleanup(f.close)
	return f
}

func (f *tcpFront) URL() string { return "http://" + f.ln.Addr().String() }

func (f *tcpFront) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Go(func() { f.relay(c) })
	}
}

func (f *tcpFront) track(c net.Conn, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		f.conns[c] = struct{}{}
	} else {
		delete(f.conns, c)
	}
}

func (f *tcpFront) relay(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", f.target)
	if err != nil {
		return
	}
	defer up.Close()
	f.track(c, true)
	f.track(up, true)
	select {
	case f.relayed <- struct{}{}:
	default:
	}
	defer f.track(c, false)
	defer f.track(up, false)
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(up, c)
		errc <- err
	}()
	go func() { errc <- f.downstream(c, up) }()
	<-errc
	c.Close()
	up.Close()
	<-errc
}

// downstream copies hub → client, watching for a 101 answer head.
func (f *tcpFront) downstream(c, up net.Conn) error {
	buf := make([]byte, 32<<10)
	var head []byte
	inHead := true
	for {
		n, err := up.Read(buf)
		if n > 0 {
			b := buf[:n]
			if inHead {
				head = append(head, b...)
				if bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
					if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
						f.upgrades.Add(1)
						if f.cutUpgrades.Load() {
							c.Write(head[:i+4])
							return io.EOF
						}
						inHead = false
					}
				} else if len(head) >= 12 {
					inHead = false
				}
			}
			if _, werr := c.Write(b); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

// cutAll closes every relayed connection, as a dropped network would.
func (f *tcpFront) cutAll() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for c := range f.conns {
		c.Close()
		n++
	}
	return n
}

// cutNext cuts every connection, waiting for one to be relayed if there is
// none (a client between two requests). It fails t after 10s.
func (f *tcpFront) cutNext(t *testing.T) int {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		if n := f.cutAll(); n > 0 {
			return n
		}
		select {
		case <-f.relayed:
		case <-timeout:
			t.Fatal("no connection to cut within 10s")
		}
	}
}

func (f *tcpFront) close() {
	f.ln.Close()
	f.cutAll()
	f.wg.Wait()
}

// refuseUpgrades answers every WebSocket upgrade with status, and every
// path in refused with 404, passing the rest to next.
func refuseUpgrades(next http.Handler, status int, refused ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, `{"error":{"code":"forbidden","message":"no WebSocket here"}}`)
			return
		}
		for _, p := range refused {
			if r.URL.Path == p {
				http.NotFound(w, r)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
