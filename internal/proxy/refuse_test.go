package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRefusals covers every row of the refusal table in docs/proxy.md:
// each refusal, through each protocol, answered to a real client (curl,
// PySocks) in that client's protocol, logged with its outcome and counted.
func TestRefusals(t *testing.T) {
	checkLeaks(t)
	origin := newOrigin(t)
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	closed := closedPort(t)
	authCfg := Config{Allow: loopback, Credentials: []Credential{{"u", "p"}}}

	type row struct {
		name    string
		cfg     Config
		hold    int    // connections opened first, to fill a cap
		proto   string // http, connect, socks4, socks5
		user    string // user:pass for the client, if any
		port    string // destination port; empty: the origin's
		host    string // destination host; empty: 127.0.0.1
		path    string // HTTP forward path; empty: /r
		status  int    // HTTP answer
		pyText  string // what PySocks reports for a SOCKS answer
		outcome string // access-log outcome and requests_total label
		reason  string // connections_refused_total reason, caps only
	}
	failDial := func(err error) Config {
		return Config{Allow: loopback, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}}
	}
	upstream, _ := url.Parse("http://127.0.0.1:" + closed)
	perClient := Config{Allow: loopback, MaxConnsPerClient: 1}
	full := Config{Allow: loopback, MaxConns: 1}
	rows := []row{
		{name: "per-client cap http", cfg: perClient, hold: 1, proto: "http", status: 429, outcome: "max_conns_per_client", reason: "max_conns_per_client"},
		{name: "per-client cap connect", cfg: perClient, hold: 1, proto: "connect", status: 429, outcome: "max_conns_per_client", reason: "max_conns_per_client"},
		{name: "per-client cap socks5", cfg: perClient, hold: 1, proto: "socks5", pyText: "0x02: Connection not allowed by ruleset", outcome: "max_conns_per_client", reason: "max_conns_per_client"},
		{name: "per-client cap socks4", cfg: perClient, hold: 1, proto: "socks4", pyText: "0x5b: Request rejected or failed", outcome: "max_conns_per_client", reason: "max_conns_per_client"},
		{name: "server cap http", cfg: full, hold: 1, proto: "http", status: 503, outcome: "max_conns", reason: "max_conns"},
		{name: "server cap connect", cfg: full, hold: 1, proto: "connect", status: 503, outcome: "max_conns", reason: "max_conns"},
		{name: "server cap socks5", cfg: full, hold: 1, proto: "socks5", pyText: "0x02: Connection not allowed by ruleset", outcome: "max_conns", reason: "max_conns"},
		{name: "server cap socks4", cfg: full, hold: 1, proto: "socks4", pyText: "0x5b: Request rejected or failed", outcome: "max_conns", reason: "max_conns"},

		{name: "acl http", cfg: Config{}, proto: "http", status: 403, outcome: "forbidden"},
		{name: "acl connect", cfg: Config{}, proto: "connect", status: 403, outcome: "forbidden"},
		{name: "acl socks5", cfg: Config{}, proto: "socks5", pyText: "0x02: Connection not allowed by ruleset", outcome: "forbidden"},
		{name: "acl socks4", cfg: Config{}, proto: "socks4", pyText: "0x5b: Request rejected or failed", outcome: "forbidden"},

		{name: "auth missing http", cfg: authCfg, proto: "http", status: 407, outcome: "auth_failed"},
		{name: "auth wrong connect", cfg: authCfg, proto: "connect", user: "u:x", status: 407, outcome: "auth_failed"},
		{name: "auth wrong socks5", cfg: authCfg, proto: "socks5", user: "u:x", pyText: "SOCKS5 authentication failed", outcome: "auth_failed"},
		{name: "auth missing socks5", cfg: authCfg, proto: "socks5", pyText: "All offered SOCKS5 authentication methods were rejected", outcome: "auth_required"},
		{name: "auth socks4", cfg: authCfg, proto: "socks4", user: "u:", pyText: "0x5b: Request rejected or failed", outcome: "auth_required"},

		{name: "bad request http", cfg: Config{Allow: loopback}, proto: "http", path: "ftp", status: 400, outcome: "bad_request"},
		{name: "bad address socks5", cfg: Config{Allow: loopback}, proto: "socks5", port: "0", pyText: "0x01: General SOCKS server failure", outcome: "bad_address"},

		{name: "refused http", cfg: Config{Allow: loopback}, proto: "http", port: closed, status: 502, outcome: "connection_refused"},
		{name: "refused connect", cfg: Config{Allow: loopback}, proto: "connect", port: closed, status: 502, outcome: "connection_refused"},
		{name: "refused socks5", cfg: Config{Allow: loopback}, proto: "socks5", port: closed, pyText: "0x05: Connection refused", outcome: "connection_refused"},
		{name: "refused socks4", cfg: Config{Allow: loopback}, proto: "socks4", port: closed, pyText: "0x5b: Request rejected or failed", outcome: "connection_refused"},
		{name: "net unreachable connect", cfg: failDial(syscall.ENETUNREACH), proto: "connect", status: 502, outcome: "network_unreachable"},
		{name: "net unreachable socks5", cfg: failDial(syscall.ENETUNREACH), proto: "socks5", pyText: "0x03: Network unreachable", outcome: "network_unreachable"},
		{name: "host unreachable socks5", cfg: failDial(syscall.EHOSTUNREACH), proto: "socks5", pyText: "0x04: Host unreachable", outcome: "host_unreachable"},
		{name: "host unreachable socks4", cfg: failDial(syscall.EHOSTUNREACH), proto: "socks4", pyText: "0x5b: Request rejected or failed", outcome: "host_unreachable"},
		{name: "dial timeout http", cfg: failDial(context.DeadlineExceeded), proto: "http", status: 504, outcome: "dial_timeout"},
		{name: "dial timeout socks5", cfg: failDial(context.DeadlineExceeded), proto: "socks5", pyText: "0x04: Host unreachable", outcome: "dial_timeout"},
		{name: "upstream failed connect", cfg: Config{Allow: loopback, Upstreams: []*url.URL{upstream}}, proto: "connect", status: 502, outcome: "upstream_failed"},
		{name: "upstream failed socks5", cfg: Config{Allow: loopback, Upstreams: []*url.URL{upstream}}, proto: "socks5", pyText: "0x01: General SOCKS server failure", outcome: "upstream_failed"},
		{name: "unresolved socks5", cfg: Config{Allow: loopback}, proto: "socks5", host: "nosuch.test", pyText: "0x04: Host unreachable", outcome: "resolve_failed"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			p := startProxy(t, r.cfg)
			for range r.hold {
				dialProxy(t, p.addr)
			}
			for deadline := time.Now().Add(10 * time.Second); p.metrics.open.Load() < int64(r.hold); {
				if time.Now().After(deadline) {
					t.Fatal("held connections not accepted")
				}
				time.Sleep(time.Millisecond)
			}
			dport, host := cmp(r.port, port), cmp(r.host, "127.0.0.1")
			switch r.proto {
			case "http", "connect":
				checkHTTPRefusal(t, p.addr, r.proto, r.user, host, dport, r.path, r.status, r.outcome)
			default:
				kind := r.proto
				if host != "127.0.0.1" {
					kind += map[string]string{"socks4": "a", "socks5": "h"}[kind]
				}
				args := []string{"testdata/pysocks_get.py", kind, "127.0.0.1", portOf(p.addr), host, dport, "/r"}
				if r.user != "" {
					u, pw, _ := strings.Cut(r.user, ":")
					args = append(args, u, pw)
				}
				out, err := runCmd(t, "/usr/bin/python3", args...)
				if err == nil || !strings.Contains(out, "proxy error") || !strings.Contains(out, r.pyText) {
					t.Fatalf("pysocks %v: %v, want %q\n%s", args, err, r.pyText, out)
				}
			}
			n := 1 // answers the client got: curl and a raw read for HTTP
			if r.proto == "http" || r.proto == "connect" {
				n = 2
			}
			waitLogged(t, p, r.proto, r.outcome, n)
			var m bytes.Buffer
			p.WriteMetrics(&m)
			want := fmt.Sprintf(`duplex_proxy_requests_total{outcome=%q,proto=%q} %d`, r.outcome, r.proto, n)
			if !strings.Contains(m.String(), want) {
				t.Errorf("metrics lack %s:\n%s", want, m.String())
			}
			if r.reason != "" {
				want := fmt.Sprintf(`duplex_proxy_connections_refused_total{reason=%q} %d`, r.reason, n)
				if !strings.Contains(m.String(), want) {
					t.Errorf("metrics lack %s:\n%s", want, m.String())
				}
			}
		})
	}
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := portOf(ln.Addr().String())
	ln.Close()
	return p
}

// checkHTTPRefusal asks curl for the answer's status, then reads the same
// answer raw to check its JSON body (and Retry-After on 429 and 503).
func checkHTTPRefusal(t *testing.T, proxyAddr, proto, user, host, port, path string, status int, outcome string) {
	t.Helper()
	px := "http://" + proxyAddr
	if user != "" {
		px = "http://" + user + "@" + proxyAddr
	}
	url := "http://" + net.JoinHostPort(host, port) + cmp(path, "/r")
	if path == "ftp" {
		url = "ftp://" + net.JoinHostPort(host, port) + "/r"
	}
	args := []string{"-sS", "--max-time", "20", "-o", "/dev/null", "-w", "%{http_code} %{http_connect}", "-x", px}
	if proto == "connect" {
		args = append(args, "-p")
	}
	out, _ := runCmd(t, "curl", append(args, url)...)
	code := fmt.Sprint(status)
	if f := strings.Fields(out); len(f) < 2 || !(proto == "connect" && f[len(f)-1] == code || proto == "http" && f[len(f)-2] == code) {
		t.Fatalf("curl %v: %q, want %d", args, out, status)
	}
	c := dialProxy(t, proxyAddr)
	auth := ""
	if user != "" {
		auth = "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user)) + "\r\n"
	}
	if proto == "connect" {
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: x\r\n%s\r\n", net.JoinHostPort(host, port), auth)
	} else {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n", url, auth)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var js httpRefusal
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &js) != nil || js.Error != outcome || js.Message == "" {
		t.Fatalf("raw answer %d %v %q, want %d with error %q", resp.StatusCode, resp.Header, body, status, outcome)
	}
	if (status == 429 || status == 503) && (resp.Header.Get("Retry-After") != "1" || js.Limit != 1) {
		t.Fatalf("cap answer lacks Retry-After or limit: %v %q", resp.Header, body)
	}
}

// waitLogged waits for n access-log lines with proto and outcome: a line
// is written after the answer, so the client may see the answer first.
func waitLogged(t *testing.T, p *testProxy, proto, outcome string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		k := 0
		for _, line := range strings.Split(p.log.String(), "\n") {
			var l struct{ Proto, Outcome string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Proto == proto && l.Outcome == outcome {
				k++
			}
		}
		if k == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with proto %s outcome %s:\n%s", proto, outcome, p.log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRefusalsBind covers the command_not_supported row, which no client
// library here can send (BIND): raw bytes, exact reply codes.
func TestRefusalsBind(t *testing.T) {
	checkLeaks(t)
	p := startProxy(t, Config{Allow: loopback})
	c := dialProxy(t, p.addr)
	c.Write([]byte{5, 1, 0})
	var g [2]byte
	if _, err := io.ReadFull(c, g[:]); err != nil || g != [2]byte{5, 0} {
		t.Fatalf("greeting %v %v", g, err)
	}
	c.Write([]byte{5, cmdBind, 0, atypIPv4, 127, 0, 0, 1, 0, 80})
	if rep, err := readSOCKS5Reply(c); err != nil || rep != repCmdNotSupported {
		t.Fatalf("socks5 BIND: reply %#x %v, want 0x07", rep, err)
	}
	waitLogged(t, p, "socks5", "command_not_supported", 1)

	c4 := dialProxy(t, p.addr)
	c4.Write([]byte{4, 2, 0, 80, 127, 0, 0, 1, 0})
	var rep [8]byte
	if _, err := io.ReadFull(c4, rep[:]); err != nil || rep[1] != 0x5B {
		t.Fatalf("socks4 BIND: reply %v %v, want 0x5B", rep, err)
	}
	waitLogged(t, p, "socks4", "command_not_supported", 1)
}
