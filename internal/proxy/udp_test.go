package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// udpEcho starts a UDP echo server on ip:0.
func udpEcho(t *testing.T, ip string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c
}

// udpAssociate opens a SOCKS5 UDP association and returns the control
// connection and the relay address.
func udpAssociate(t *testing.T, proxyAddr string) (net.Conn, netip.AddrPort) {
	t.Helper()
	c := dialProxy(t, proxyAddr)
	c.Write([]byte{5, 1, 0})
	var b [2]byte
	io.ReadFull(c, b[:])
	c.Write([]byte{5, cmdUDPAssociate, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	var h [10]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatal(err)
	}
	if h[1] != 0 || h[3] != atypIPv4 {
		t.Fatalf("UDP ASSOCIATE reply %v", h)
	}
	return c, netip.AddrPortFrom(netip.AddrFrom4([4]byte(h[4:8])), uint16(h[8])<<8|uint16(h[9]))
}

func TestUDPAssociate(t *testing.T) {
	checkLeaks(t)
	echo := udpEcho(t, "127.0.0.1")
	refused := udpEcho(t, "127.0.0.2") // outside the allow list
	res := newResolver("echo.test", "127.0.0.1")
	p := startProxy(t, Config{Allow: loopback, LookupNetIP: res.lookup})
	ctl, relay := udpAssociate(t, p.addr)

	cl, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cl.SetDeadline(time.Now().Add(10 * time.Second))
	echoAP := echo.LocalAddr().(*net.UDPAddr).AddrPort()
	refusedAP := refused.LocalAddr().(*net.UDPAddr).AddrPort()

	// First to the refused destination: dropped. Then by IP and by name
	// to the allowed one.
	cl.WriteToUDPAddrPort(appendSOCKS5Addr([]byte{0, 0, 0}, refusedAP), relay)
	cl.WriteToUDPAddrPort(append(appendSOCKS5Addr([]byte{0, 0, 0}, echoAP), "one"...), relay)
	buf := make([]byte, 2048)
	n, from, err := cl.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if from != relay {
		t.Fatalf("answer from %v, want the relay %v", from, relay)
	}
	want := append(appendSOCKS5Addr([]byte{0, 0, 0}, echoAP), "echo:one"...)
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("got %q, want %q", buf[:n], want)
	}
	byName := []byte{0, 0, 0, atypDomain, 9}
	byName = append(byName, "echo.test"...)
	byName = append(byName, byte(echoAP.Port()>>8), byte(echoAP.Port()))
	cl.WriteToUDPAddrPort(append(byName, "two"...), relay)
	n, _, err = cl.ReadFromUDPAddrPort(buf)
	if err != nil || !bytes.HasSuffix(buf[:n], []byte("echo:two")) {
		t.Fatalf("by name: %q %v", buf[:n], err)
	}
	// The refused datagram was sent before the allowed ones by the same
	// relay goroutine; had it been relayed, it would be queued by now.
	refused.SetReadDeadline(time.Now())
	if _, _, err := refused.ReadFromUDPAddrPort(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("refused destination got a datagram (err %v)", err)
	}
	refused.SetReadDeadline(time.Time{})

	// A datagram from another port of the client's host is not the owner's.
	other, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer other.Close()
	other.WriteToUDPAddrPort(append(appendSOCKS5Addr([]byte{0, 0, 0}, echoAP), "intruder"...), relay)
	cl.WriteToUDPAddrPort(append(appendSOCKS5Addr([]byte{0, 0, 0}, echoAP), "three"...), relay)
	n, _, err = cl.ReadFromUDPAddrPort(buf)
	if err != nil || !bytes.HasSuffix(buf[:n], []byte("echo:three")) {
		t.Fatalf("owner: %q %v", buf[:n], err)
	}
	other.SetReadDeadline(time.Now())
	if _, _, err := other.ReadFromUDPAddrPort(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("a non-owner got an answer")
	}

	// Closing the control connection ends the association.
	ctl.Close()
	waitIdle(t, p)
}

func TestUDPAssociateRefusedWithUpstream(t *testing.T) {
	checkLeaks(t)
	up := startProxy(t, Config{Allow: loopback})
	p := startProxy(t, Config{Allow: loopback, Upstreams: mustURLs("socks5://" + up.addr)})
	c := dialProxy(t, p.addr)
	c.Write([]byte{5, 1, 0, 5, cmdUDPAssociate, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
	var h [12]byte
	if _, err := io.ReadFull(c, h[:]); err != nil || h[3] != repCmdNotSupported {
		t.Fatalf("reply %v %v", h, err)
	}
}

// TestPySocksUDP: PySocks as a real SOCKS5 UDP client.
func TestPySocksUDP(t *testing.T) {
	checkLeaks(t)
	echo := udpEcho(t, "127.0.0.1")
	p := startProxy(t, Config{Allow: loopback})
	phost, pport, _ := net.SplitHostPort(p.addr)
	ehost, eport, _ := net.SplitHostPort(echo.LocalAddr().String())
	out, err := runCmd(t, "/usr/bin/python3", "testdata/pysocks_udp.py", phost, pport, ehost, eport, "ping")
	if err != nil || !strings.Contains(out, "echo:ping from "+echo.LocalAddr().String()) {
		t.Fatalf("pysocks udp: %v\n%s", err, out)
	}
	waitIdle(t, p)
	if !strings.Contains(p.log.String(), `"proto":"socks5-udp"`) {
		t.Errorf("log: %s", p.log.String())
	}
}
