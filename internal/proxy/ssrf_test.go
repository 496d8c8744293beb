package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
)

// refusedAddrs are destinations the default configuration must refuse,
// each with the IPv4 address it embeds (if any) for documentation.
var refusedAddrs = []string{
	// IPv4
	"127.0.0.1", "127.255.255.254", // loopback
	"10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", // RFC 1918
	"169.254.169.254", "169.254.0.1", // link-local, cloud metadata
	"100.64.0.1", "100.127.255.255", // CGNAT
	"224.0.0.1", "239.255.255.250", // multicast
	"0.0.0.0", "0.1.2.3", // unspecified, "this network"
	"255.255.255.255", "240.0.0.1", // broadcast, reserved
	// IPv6
	"::1", "::", // loopback, unspecified
	"fc00::1", "fd12:3456::1", // unique local
	"fe80::1", // link-local
	"ff02::1", // multicast
	"fec0::1", // site-local
	// IPv6 forms embedding refused IPv4 addresses
	"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", // IPv4-mapped
	"::127.0.0.1", "::169.254.169.254", // IPv4-compatible
	"::ffff:0:a00:1",                        // SIIT IPv4-translated 10.0.0.1
	"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", // NAT64 127.0.0.1, 169.254.169.254
	"64:ff9b:1::a00:1",                    // local-use NAT64 10.0.0.1
	"2002:7f00:1::1", "2002:a9fe:a9fe::1", // 6to4 127.0.0.1, 169.254.169.254
	"2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1
}

// dialRecorder is a Dial hook that records what the proxy dials and
// refuses the connection, so no test packet leaves the machine.
type dialRecorder struct {
	mu    sync.Mutex
	addrs []netip.Addr
}

func (d *dialRecorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial hook got %q: %w", addr, err)
	}
	d.mu.Lock()
	d.addrs = append(d.addrs, ap.Addr())
	d.mu.Unlock()
	return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
}

func (d *dialRecorder) take() []netip.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.addrs
	d.addrs = nil
	return a
}

// probe asks the proxy for host:80 over one protocol and reports the
// answer code (HTTP status or SOCKS reply).
type probe struct {
	name string
	ok   func(a netip.Addr) bool // which destinations the protocol can express
	run  func(t *testing.T, proxyAddr, host string) int
}

func probes() []probe {
	all := func(netip.Addr) bool { return true }
	v4 := func(a netip.Addr) bool { return a.Is4() }
	v6 := func(a netip.Addr) bool { return a.Is6() }
	return []probe{
		{"http forward", all, func(t *testing.T, p, h string) int {
			return httpForward(t, p, "http://"+net.JoinHostPort(h, "80")+"/")
		}},
		{"http CONNECT", all, func(t *testing.T, p, h string) int {
			_, code := httpConnectDial(t, p, net.JoinHostPort(h, "80"))
			return code
		}},
		{"socks5 ipv4", v4, func(t *testing.T, p, h string) int {
			_, rep := socks5Dial(t, p, atypIPv4, h, 80)
			return int(rep)
		}},
		{"socks5 ipv6", v6, func(t *testing.T, p, h string) int {
			_, rep := socks5Dial(t, p, atypIPv6, h, 80)
			return int(rep)
		}},
		{"socks5 domain", all, func(t *testing.T, p, h string) int {
			_, rep := socks5Dial(t, p, atypDomain, h, 80)
			return int(rep)
		}},
		{"socks4", v4, func(t *testing.T, p, h string) int {
			_, rep := socks4Dial(t, p, h, 80)
			return int(rep)
		}},
		{"socks4a", all, func(t *testing.T, p, h string) int {
			// A SOCKS4a domain may itself be an address literal.
			if a, err := netip.ParseAddr(h); err == nil && a.Is4() {
				return -1
			}
			_, rep := socks4Dial(t, p, h, 80)
			return int(rep)
		}},
	}
}

// refusedCode is the answer each protocol gives for a refused destination.
func refusedCode(probe string) int {
	switch probe {
	case "http forward", "http CONNECT":
		return 403
	case "socks4", "socks4a":
		return 0x5B
	}
	return 0x02
}

// TestSSRF runs the matrix: every refused range, by literal and by a name
// resolving to it, through every protocol.
func TestSSRF(t *testing.T) {
	checkLeaks(t)
	res := newResolver()
	for i, s := range refusedAddrs {
		res.set(fmt.Sprintf("ssrf%d.test", i), netip.MustParseAddr(s))
	}
	dr := &dialRecorder{}
	p := startProxy(t, Config{LookupNetIP: res.lookup, Dial: dr.dial})
	for i, s := range refusedAddrs {
		a := netip.MustParseAddr(s)
		name := fmt.Sprintf("ssrf%d.test", i)
		for _, pr := range probes() {
			for _, host := range []string{s, name} {
				if host == s && !pr.ok(a) {
					continue
				}
				if host == name && (pr.name == "socks5 ipv4" || pr.name == "socks5 ipv6" || pr.name == "socks4") {
					continue // these cannot carry a name
				}
				got := pr.run(t, p.addr, host)
				if got == -1 {
					continue
				}
				if want := refusedCode(pr.name); got != want {
					t.Errorf("%s to %s: got %#x, want %#x", pr.name, host, got, want)
				}
			}
		}
	}
	if d := dr.take(); len(d) > 0 {
		t.Errorf("refused destinations were dialled: %v", d)
	}
}

// TestSSRFAllowed: AllowPrivate and Allow open the ranges; the address
// dialled is the one resolved and checked, resolved once.
func TestSSRFAllowed(t *testing.T) {
	checkLeaks(t)
	res := newResolver()
	for i, s := range refusedAddrs {
		res.set(fmt.Sprintf("ssrf%d.test", i), netip.MustParseAddr(s))
	}
	dr := &dialRecorder{}
	p := startProxy(t, Config{LookupNetIP: res.lookup, Dial: dr.dial, AllowPrivate: true})
	for i, s := range refusedAddrs {
		a := netip.MustParseAddr(s)
		name := fmt.Sprintf("ssrf%d.test", i)
		for _, pr := range probes() {
			for _, host := range []string{s, name} {
				if host == s && !pr.ok(a) {
					continue
				}
				if host == name && (pr.name == "socks5 ipv4" || pr.name == "socks5 ipv6" || pr.name == "socks4") {
					continue
				}
				before := res.count(host)
				got := pr.run(t, p.addr, host)
				if got == -1 {
					continue
				}
				if got == refusedCode(pr.name) && pr.name != "socks4" && pr.name != "socks4a" {
					t.Errorf("%s to %s refused with AllowPrivate", pr.name, host)
				}
				d := dr.take()
				if len(d) != 1 || d[0] != a.Unmap() {
					t.Errorf("%s to %s: dialled %v, want [%v]", pr.name, host, d, a.Unmap())
				}
				if host == name {
					if n := res.count(host) - before; n != 1 {
						t.Errorf("%s to %s: resolved %d times, want once", pr.name, host, n)
					}
				}
			}
		}
	}
}

func TestAllowCIDR(t *testing.T) {
	checkLeaks(t)
	dr := &dialRecorder{}
	p := startProxy(t, Config{Dial: dr.dial, Allow: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("::ffff:192.168.7.0/120"), // IPv4-mapped form of 192.168.7.0/24
	}})
	for _, tc := range []struct {
		host   string
		dialed string // "" means refused
	}{
		{"10.1.2.3", "10.1.2.3"},
		{"::ffff:10.1.2.3", "10.1.2.3"},
		{"127.0.0.1", "127.0.0.1"},
		{"2002:7f00:1::1", "2002:7f00:1::1"}, // 6to4 embedding an allowed address
		{"192.168.7.9", "192.168.7.9"},
		{"192.168.8.1", ""},
		{"127.0.0.2", ""},
		{"169.254.169.254", ""},
		{"::1", ""},
	} {
		_, rep := socks5Dial(t, p.addr, atypDomain, tc.host, 80)
		d := dr.take()
		if tc.dialed == "" {
			if rep != 0x02 || len(d) != 0 {
				t.Errorf("%s: reply %#x, dialled %v; want refused", tc.host, rep, d)
			}
			continue
		}
		if rep != 0x05 || len(d) != 1 || d[0] != netip.MustParseAddr(tc.dialed) {
			t.Errorf("%s: reply %#x, dialled %v; want %s", tc.host, rep, d, tc.dialed)
		}
	}
}

// TestNameWithMixedAddresses: a name that resolves to a private and a
// public address is only ever dialled on the public one.
func TestNameWithMixedAddresses(t *testing.T) {
	checkLeaks(t)
	res := newResolver()
	res.set("mixed.test", netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.43.10"))
	res.set("private.test", netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::1"))
	dr := &dialRecorder{}
	p := startProxy(t, Config{LookupNetIP: res.lookup, Dial: dr.dial})
	if _, rep := socks5Dial(t, p.addr, atypDomain, "mixed.test", 80); rep != 0x05 {
		t.Errorf("mixed: reply %#x", rep)
	}
	if d := dr.take(); len(d) != 1 || d[0] != netip.MustParseAddr("192.0.43.10") {
		t.Errorf("mixed: dialled %v", d)
	}
	if _, rep := socks5Dial(t, p.addr, atypDomain, "private.test", 80); rep != 0x02 {
		t.Errorf("private: reply %#x", rep)
	}
	if code := httpForward(t, p.addr, "http://nosuch.test/"); code != 502 {
		t.Errorf("unresolvable name: %d, want 502", code)
	}
	if _, rep := socks5Dial(t, p.addr, atypDomain, "nosuch.test", 80); rep != 0x04 {
		t.Errorf("unresolvable name: reply %#x, want 0x04", rep)
	}
}

// TestNoSelfLoop: even with private destinations allowed, the proxy does
// not connect to itself.
func TestNoSelfLoop(t *testing.T) {
	checkLeaks(t)
	p := startProxy(t, Config{AllowPrivate: true})
	if _, code := httpConnectDial(t, p.addr, p.addr); code != 403 {
		t.Fatalf("CONNECT to itself: %d, want 403", code)
	}
}
