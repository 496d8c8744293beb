package check

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Target is one proxy to check: its address, the credentials it was given
// with, and the protocols its scheme names.
type Target struct {
	// URL is scheme://[user:pass@]host:port; a bare host:port is kept
	// with the scheme "any".
	URL *url.URL
	// Protocols are the protocols to probe: the family of the scheme
	// (http: forwarding and CONNECT; socks4: SOCKS4 and 4a; socks5: SOCKS5,
	// 5h and UDP), or every protocol for a bare host:port.
	Protocols []string
	// Line is the line of the list it came from; 0 for a command-line
	// argument.
	Line int
}

// String is the target as given, password redacted.
func (t Target) String() string {
	if t.URL.Scheme == "any" {
		return strings.TrimPrefix(t.URL.Redacted(), "any://")
	}
	return t.URL.Redacted()
}

// LineError is a line of a proxy list that was skipped, and why.
type LineError struct {
	Line int
	Text string // the line, truncated to 80 bytes
	Err  string
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %s: %q", e.Line, e.Err, e.Text) }

// schemeProtocols maps each accepted scheme to the protocols it names.
var schemeProtocols = map[string][]string{
	"http":    {ProtoHTTP, ProtoConnect},
	"socks4":  {ProtoSOCKS4, ProtoSOCKS4a},
	"socks4a": {ProtoSOCKS4a},
	"socks5":  {ProtoSOCKS5, ProtoSOCKS5h, ProtoSOCKS5UDP},
	"socks5h": {ProtoSOCKS5h, ProtoSOCKS5, ProtoSOCKS5UDP},
	"any":     Protocols,
}

// maxLine bounds one line of a proxy list; longer lines are reported and
// skipped without being held whole.
const maxLine = 4096

// ParseTarget parses "scheme://[user:pass@]host:port" (scheme http,
// socks4, socks4a, socks5 or socks5h) or "[user:pass@]host:port" (every
// protocol).
func ParseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Target{}, fmt.Errorf("empty proxy")
	}
	if len(s) > maxLine {
		return Target{}, fmt.Errorf("longer than %d bytes", maxLine)
	}
	raw := s
	if !strings.Contains(s, "://") {
		if strings.ContainsAny(s, "/?#") {
			return Target{}, fmt.Errorf("want [user:pass@]host:port or scheme://[user:pass@]host:port")
		}
		raw = "any://" + s
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("not a proxy URL: %v", unwrapURLError(err))
	}
	u.Scheme = strings.ToLower(u.Scheme)
	protos, ok := schemeProtocols[u.Scheme]
	if !ok || (u.Scheme == "any" && strings.Contains(s, "://")) {
		return Target{}, fmt.Errorf("scheme %q is not one of http, socks4, socks4a, socks5, socks5h", u.Scheme)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Target{}, fmt.Errorf("a proxy has no path, query or fragment")
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil || host == "" {
		return Target{}, fmt.Errorf("want host:port")
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostName(host) {
		return Target{}, fmt.Errorf("host %q is neither an IP address nor a host name", short(host))
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return Target{}, fmt.Errorf("port %q is not 1-65535", port)
	}
	u.Path = ""
	return Target{URL: u, Protocols: protos}, nil
}

// validHostName reports whether h is made of the letters, digits, dots,
// hyphens and underscores of DNS names, at most 253 of them.
func validHostName(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// ParseList reads a proxy list: one proxy a line, blank lines and lines
// starting with # ignored, a trailing " # comment" stripped. Bad lines
// and repeats of an earlier proxy are returned as LineErrors and skipped;
// the error is only the reader's.
func ParseList(r io.Reader) ([]Target, []LineError, error) {
	var (
		out  []Target
		bad  []LineError
		seen = map[string]int{}
	)
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, tooLong, err := readLine(br)
		if err == io.EOF && line == "" && !tooLong {
			return out, bad, nil
		}
		if err != nil && err != io.EOF {
			return out, bad, err
		}
		text := line
		if i := strings.Index(text, " #"); i >= 0 {
			text = text[:i]
		}
		text = strings.TrimSpace(text)
		switch {
		case tooLong:
			bad = append(bad, LineError{n, short(line), fmt.Sprintf("longer than %d bytes", maxLine)})
		case text == "" || strings.HasPrefix(text, "#"):
		default:
			t, perr := ParseTarget(text)
			if perr != nil {
				bad = append(bad, LineError{n, short(text), perr.Error()})
				break
			}
			key := t.URL.String()
			if first, dup := seen[key]; dup {
				bad = append(bad, LineError{n, short(text), fmt.Sprintf("repeats line %d", first)})
				break
			}
			seen[key] = n
			t.Line = n
			out = append(out, t)
		}
		if err == io.EOF {
			return out, bad, nil
		}
	}
}

// readLine reads one line without its end; a line over maxLine is
// consumed to its end and reported with tooLong, its head kept.
func readLine(br *bufio.Reader) (line string, tooLong bool, err error) {
	var b []byte
	for {
		chunk, isPrefix, e := br.ReadLine()
		if len(b) < maxLine+1 {
			b = append(b, chunk[:min(len(chunk), maxLine+1-len(b))]...)
		}
		if e != nil {
			return string(b), len(b) > maxLine, e
		}
		if !isPrefix {
			return string(b), len(b) > maxLine, nil
		}
	}
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80]
	}
	return s
}
