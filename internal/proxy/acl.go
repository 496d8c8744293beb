package proxy

import (
	"net/netip"
)

// refused lists the destination ranges a client may not reach unless the
// configuration allows them. IPv6 forms that embed an IPv4 address are
// checked through [embeddedIPv4] as well.
var refused = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		// IPv4
		"0.0.0.0/8",       // "this network", unspecified
		"10.0.0.0/8",      // RFC 1918
		"100.64.0.0/10",   // CGNAT, RFC 6598
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local, cloud metadata 169.254.169.254
		"172.16.0.0/12",   // RFC 1918
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.168.0.0/16",  // RFC 1918
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, and 255.255.255.255 broadcast
		// IPv6
		"::/128",        // unspecified
		"::1/128",       // loopback
		"100::/64",      // discard-only
		"2001:db8::/32", // documentation
		"fc00::/7",      // unique local
		"fe80::/10",     // link-local
		"fec0::/10",     // site-local (deprecated)
		"ff00::/8",      // multicast
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

var (
	prefixMapped   = netip.MustParsePrefix("::ffff:0:0/96")
	prefixCompat   = netip.MustParsePrefix("::/96")
	prefixSIIT     = netip.MustParsePrefix("::ffff:0:0:0/96")
	prefixNAT64    = netip.MustParsePrefix("64:ff9b::/96")
	prefixNAT64loc = netip.MustParsePrefix("64:ff9b:1::/48")
	prefix6to4     = netip.MustParsePrefix("2002::/16")
	prefixTeredo   = netip.MustParsePrefix("2001::/32")
)

// embeddedIPv4 returns the IPv4 addresses an IPv6 address carries in the
// well-known translation and tunnelling forms: IPv4-mapped, IPv4-compatible,
// SIIT, NAT64 (well-known and local-use), 6to4 and Teredo (server and
// obfuscated client).
func embeddedIPv4(a netip.Addr) []netip.Addr {
	if !a.Is6() {
		return nil
	}
	b := a.As16()
	last := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	switch {
	case prefixMapped.Contains(a), prefixSIIT.Contains(a), prefixNAT64.Contains(a), prefixNAT64loc.Contains(a):
		return []netip.Addr{last}
	case prefixCompat.Contains(a):
		// ::/128 and ::1/128 are in the refused list on their own.
		return []netip.Addr{last}
	case prefix6to4.Contains(a):
		return []netip.Addr{netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})}
	case prefixTeredo.Contains(a):
		return []netip.Addr{
			netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}),
			netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}),
		}
	}
	return nil
}

// acl decides which destination addresses clients may reach.
type acl struct {
	allowAll bool
	allow    []netip.Prefix
}

// allowed reports whether a destination address may be dialled. An address
// is refused when it, or an IPv4 address it embeds, lies in a refused range
// that no Allow prefix opens.
func (l *acl) allowed(a netip.Addr) bool {
	if l.allowAll {
		return true
	}
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	if a.Zone() != "" {
		a = a.WithZone("")
	}
	if l.refused(a) {
		return false
	}
	for _, e := range embeddedIPv4(a) {
		if l.refused(e) {
			return false
		}
	}
	return true
}

func (l *acl) refused(a netip.Addr) bool {
	for _, p := range l.allow {
		if p.Contains(a) {
			return false
		}
	}
	for _, p := range refused {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
