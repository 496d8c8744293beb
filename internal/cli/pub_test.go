package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/duplexhq/duplex/internal/hubtest"
	"github.com/duplexhq/duplex/internal/proxy"
	"github.com/duplexhq/duplex/internal/server"
)

// runMain runs cli.Main in-process with stdin and returns the exit code,
// standard output and standard error.
func runMain(t *testing.T, ctx context.Context, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(ctx, args, Stdio{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// upgradeCounter fronts a hub and counts WebSocket upgrade requests.
type upgradeCounter struct {
	next     http.Handler
	upgrades atomic.Int64
	requests atomic.Int64
}

func (u *upgradeCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.requests.Add(1)
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		u.upgrades.Add(1)
	}
	u.next.ServeHTTP(w, r)
}

var positionLine = regexp.MustCompile(`^([A-Za-z0-9_.:@-]+):([a-z0-9]{1,16}):([0-9]+)$`)

// TestPubTransports: duplex pub over every transport publishes an argument
// and a stream of stdin lines and prints each position; --transport ws
// uses one WebSocket for all of them.
func TestPubTransports(t *testing.T) {
	h := hubtest.Start(t, nil)
	for _, tr := range []string{"ws", "http", "auto"} {
		t.Run(tr, func(t *testing.T) {
			front := &upgradeCounter{next: h.Server.Handler()}
			url := hubtest.ServeHandler(t, front)
			ch := "pub-" + tr
			ctx := context.Background()
			code, out, errOut := runMain(t, ctx, "", "pub", "--url", url, "--transport", tr, "--proxy", "direct", ch, `{"first":true}`)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if m := positionLine.FindStringSubmatch(strings.TrimSpace(out)); m == nil || m[1] != ch || m[3] != "1" {
				t.Fatalf("output %q", out)
			}
			before := front.upgrades.Load()
			code, out, errOut = runMain(t, ctx, "{\"n\":2}\n\n  {\"n\":3}  \n[4]\n\"five\"\n", "pub", "--url", url, "--transport", tr, "--proxy", "direct", ch)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 4 {
				t.Fatalf("%d lines: %q", len(lines), out)
			}
			for i, l := range lines {
				m := positionLine.FindStringSubmatch(l)
				if m == nil || m[1] != ch || m[3] != string(rune('2'+i)) {
					t.Fatalf("line %d: %q", i, l)
				}
			}
			ups := front.upgrades.Load() - before
			switch tr {
			case "ws", "auto":
				if ups != 1 {
					t.Errorf("%d WebSocket upgrades for one pub run, want 1", ups)
				}
			default:
				if ups != 0 {
					t.Errorf("%d WebSocket upgrades with --transport %s", ups, tr)
				}
			}
			info, err := h.Hub.Info(ctx, ch)
			if err != nil {
				t.Fatal(err)
			}
			if info.Latest != 5 {
				t.Fatalf("hub has latest %d, want 5", info.Latest)
			}
		})
	}
}

// TestPubErrors: bad input gets a clear error and a non-zero exit.
func TestPubErrors(t *testing.T) {
	h := hubtest.Start(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name, stdin string
		args        []string
		code        int
		want        string
	}{
		{"bad channel", "", []string{"pub", "--url", h.URL, "bad channel!", "1"}, 1, "invalid channel"},
		{"bad json arg", "", []string{"pub", "--url", h.URL, "--transport", "http", "c", "{nope"}, 1, "not valid JSON"},
		{"bad json line", "1\n{nope\n", []string{"pub", "--url", h.URL, "--transport", "ws", "c"}, 1, "line 2"},
		{"bad transport", "", []string{"pub", "--url", h.URL, "--transport", "carrier-pigeon", "c", "1"}, 1, "unknown transport"},
		{"bad proxy", "", []string{"pub", "--url", h.URL, "--proxy", "gopher://x:1", "c", "1"}, 1, "scheme"},
		{"bad url", "", []string{"pub", "--url", "ftp://x", "c", "1"}, 1, "scheme"},
		{"no channel", "", []string{"pub", "--url", h.URL}, 2, "usage"},
		{"too large", "", []string{"pub", "--url", h.URL, "--transport", "http", "c", `"` + strings.Repeat("x", 70000) + `"`}, 1, "message_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runMain(t, ctx, tc.stdin, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, errOut, tc.code, tc.want)
			}
		})
	}
}

// startTestProxy runs the duplex proxy in-process on 127.0.0.1:0, allowed
// to reach 127.0.0.1 and resolving hub.test to it.
func startTestProxy(t *testing.T) string {
	t.Helper()
	s, err := proxy.New(proxy.Config{
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		LookupNetIP: func(ctx context.Context, host string) ([]netip.Addr, error) {
			if host == "hub.test" {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			}
			return nil, fmt.Errorf("no such host %q", host)
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-errc
	})
	return ln.Addr().String()
}

// TestPubSubThroughProxy: pub and sub with --proxy, and with ALL_PROXY
// from the environment (the hub named hub.test, which only the proxy
// resolves, so nothing reaches it directly).
func TestPubSubThroughProxy(t *testing.T) {
	px := startTestProxy(t)
	h := hubtest.Start(t, nil) // stops before the proxy
	_, port, _ := net.SplitHostPort(h.Addr)
	named := "http://hub.test:" + port
	ctx := context.Background()
	for _, tc := range []struct {
		name, url, flag, env string
	}{
		{"flag socks5h", named, "socks5h://" + px, ""},
		{"flag http", named, "http://" + px, ""},
		{"flag socks4", h.URL, "socks4://" + px, ""},
		{"env ALL_PROXY", named, "", "socks4a://" + px},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"} {
				t.Setenv(k, "")
			}
			t.Setenv("ALL_PROXY", tc.env)
			ch := "px-" + strings.ReplaceAll(tc.name, " ", "-")
			for _, tr := range []string{"ws", "http"} {
				args := []string{"pub", "--url", tc.url, "--transport", tr}
				if tc.flag != "" {
					args = append(args, "--proxy", tc.flag)
				}
				code, out, errOut := runMain(t, ctx, "1\n2\n", append(args, ch)...)
				if code != 0 || len(strings.Split(strings.TrimSpace(out), "\n")) != 2 {
					t.Fatalf("pub %s: exit %d, out %q, stderr %q", tr, code, out, errOut)
				}
			}
			args := []string{"sub", "--url", tc.url, "--transport", "poll", "--cursor", ch + "::0", "--count", "4"}
			if tc.flag != "" {
				args = append(args, "--proxy", tc.flag)
			}
			code, out, errOut := runMain(t, ctx, "", append(args, ch)...)
			if code != 0 || len(strings.Split(strings.TrimSpace(out), "\n")) != 4 || !strings.Contains(errOut, "cursor: "+ch+":") {
				t.Fatalf("sub: exit %d, out %q, stderr %q", code, out, errOut)
			}
		})
	}
}

// TestPubSubEnvDefaults: DUPLEX_URL and DUPLEX_TOKEN stand in for --url
// and --token; without a token a hub with a secret refuses clearly.
func TestPubSubEnvDefaults(t *testing.T) {
	secret := []byte("cli-secret")
	h := hubtest.Start(t, &hubtest.Options{Server: server.Config{JWTSecret: secret}})
	tok, err := server.NewToken(secret, server.Claims{
		RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Subscribe:        []string{"env"},
		Publish:          []string{"env"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t.Setenv("DUPLEX_URL", h.URL)
	t.Setenv("DUPLEX_TOKEN", "")
	for _, tr := range []string{"ws", "http"} {
		code, _, errOut := runMain(t, ctx, "", "pub", "--transport", tr, "env", "1")
		if code != 1 || !strings.Contains(errOut, "unauthorized") {
			t.Fatalf("%s without a token: exit %d, stderr %q", tr, code, errOut)
		}
	}
	t.Setenv("DUPLEX_TOKEN", tok)
	for _, tr := range []string{"ws", "poll"} {
		pubTr := map[string]string{"ws": "ws", "poll": "http"}[tr]
		code, out, errOut := runMain(t, ctx, "", "pub", "--transport", pubTr, "env", `"x"`)
		if code != 0 || !strings.HasPrefix(out, "env:") {
			t.Fatalf("pub %s: exit %d, out %q, stderr %q", tr, code, out, errOut)
		}
		code, out, errOut = runMain(t, ctx, "", "sub", "--transport", tr, "--cursor", "env::0", "--count", "1", "env")
		if code != 0 || !strings.Contains(out, `"channel":"env"`) {
			t.Fatalf("sub %s: exit %d, out %q, stderr %q", tr, code, out, errOut)
		}
	}
	code, _, errOut := runMain(t, ctx, "", "sub", "--transport", "sse", "other")
	if code != 1 || !strings.Contains(errOut, "forbidden") {
		t.Fatalf("sub outside the token: exit %d, stderr %q", code, errOut)
	}
}

// TestPubRefusesReceiveTransports: sse, stream and poll cannot carry a
// publication, so naming one is refused with the reason and nothing is
// published; from DUPLEX_TRANSPORT (shared with sub) they mean http.
func TestPubRefusesReceiveTransports(t *testing.T) {
	h := hubtest.Start(t, nil)
	ctx := context.Background()
	for _, tr := range []string{"sse", "stream", "poll"} {
		code, out, errOut := runMain(t, ctx, "", "pub", "--url", h.URL, "--transport", tr, "refused", "1")
		if code != 1 || out != "" || !strings.Contains(errOut, "a way to receive") || !strings.Contains(errOut, "--transport http") {
			t.Errorf("--transport %s: exit %d, stdout %q, stderr %q", tr, code, out, errOut)
		}
	}
	info, err := h.Hub.Info(ctx, "refused")
	if err != nil {
		t.Fatal(err)
	}
	if info.Latest != 0 {
		t.Fatalf("refused pubs published: latest %d", info.Latest)
	}
	front := &upgradeCounter{next: h.Server.Handler()}
	url := hubtest.ServeHandler(t, front)
	t.Setenv("DUPLEX_TRANSPORT", "poll")
	code, out, errOut := runMain(t, ctx, "", "pub", "--url", url, "--proxy", "direct", "fromenv", "1")
	if code != 0 || !strings.HasPrefix(out, "fromenv:") || front.upgrades.Load() != 0 || front.requests.Load() != 1 {
		t.Fatalf("DUPLEX_TRANSPORT=poll: exit %d, stdout %q, stderr %q, %d upgrades, %d requests; want one POST",
			code, out, errOut, front.upgrades.Load(), front.requests.Load())
	}
}
