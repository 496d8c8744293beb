package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duplexhq/duplex/internal/proxy"
	"github.com/duplexhq/duplex/internal/proxy/check"
)

// startDuplexProxy runs a duplex proxy on 127.0.0.1:0 for the test.
func startDuplexProxy(t *testing.T, cfg proxy.Config) string {
	t.Helper()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	cfg.Logger = slog.New(slog.DiscardHandler)
	p, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("proxy shutdown: %v", err)
		}
		<-served
	})
	return ln.Addr().String()
}

func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// runCheckCLI runs `duplex proxy check args...` and returns the exit
// code, standard output and standard error.
func runCheckCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"proxy", "check"}, args...), Stdio{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

// TestProxyCheckList checks a file with comments, bad lines and a
// duplicate against the in-process judge, and reads --json back.
func TestProxyCheckList(t *testing.T) {
	good := startDuplexProxy(t, proxy.Config{Anonymity: proxy.Anonymous})
	down := deadAddr(t)
	list := "# my proxies\n" + good + "  # duplex\n\nnot a proxy\n" + good + "\nhttp://" + down + "\nsocks9://h:1\n"
	path := filepath.Join(t.TempDir(), "proxies.txt")
	if err := os.WriteFile(path, []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCheckCLI(t, "", "--poll", "1s", "--timeout", "2s", "--need", "ws,sse,stream,poll,hold,udp", "--json", path)
	if code != 0 {
		t.Fatalf("exit %d, want 0\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{path + ":4: ", path + ":5: repeats line 2", path + ":7: scheme", "only suits proxies on this machine"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	var results []check.Result
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r check.Result
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		results = append(results, r)
	}
	if len(results) != 2 || results[0].Proxy != good || results[0].Line != 2 || results[1].Line != 6 {
		t.Fatalf("results %+v", results)
	}
	if r := results[0]; r.Anonymity != check.Anonymous || len(r.Models) != len(check.Models) || !r.Works(check.ProtoSOCKS5UDP) {
		t.Errorf("duplex proxy: %+v", r)
	}
	if r := results[1]; len(r.Carries) != 0 || !strings.HasPrefix(r.Verdict, "carries nothing") || r.Works(check.ProtoHTTP) {
		t.Errorf("down proxy: %+v", r)
	}
}

// TestProxyCheckCSVStdin reads the list from standard input, writes CSV,
// and exits 1 when no proxy carries what --need asks.
func TestProxyCheckCSVStdin(t *testing.T) {
	// SOCKS4 carries no password: with auth on, socks4 fails and the rest
	// works given the credentials.
	authed := startDuplexProxy(t, proxy.Config{Credentials: []proxy.Credential{{User: "u", Password: "p"}}})
	code, out, errs := runCheckCLI(t, "socks4://"+authed+"\n", "--poll", "1s", "--timeout", "2s", "--need", "sse", "--csv", "-", "u:p@"+authed)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("csv: %v\n%s", err, out)
	}
	if len(rows) != 3 || !slices.Equal(rows[0], csvHeader()) {
		t.Fatalf("rows %q", rows)
	}
	col := func(name string) int { return slices.Index(rows[0], name) }
	if rows[1][col("proxy")] != "socks4://"+authed || rows[1][col("socks4")] != "false" || rows[1][col("sse")] != "-" {
		t.Errorf("socks4 row %q", rows[1])
	}
	if r := rows[2]; r[col("proxy")] != "u:xxxxx@"+authed || r[col("socks5")] != "true" || r[col("socks4")] != "false" || r[col("sse")] != "ok" || r[col("socks5_connect_ms")] == "" {
		t.Errorf("auth row %q", r)
	}

	// Only the socks4 line: it carries nothing.
	code, _, errs = runCheckCLI(t, "socks4://"+authed+"\n", "--poll", "1s", "--timeout", "2s", "-")
	if code != 1 || !strings.Contains(errs, "no proxy carries") {
		t.Errorf("exit %d, stderr %q; want 1 and the reason", code, errs)
	}
}

func TestProxyCheckUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--need", "carrier-pigeon", "127.0.0.1:1"},
		{"--json", "--csv", "127.0.0.1:1"},
		{"--concurrency", "0", "127.0.0.1:1"},
		{"--judge", "ftp://x", "127.0.0.1:1"},
		{"no such file or proxy"},
	} {
		if code, _, errs := runCheckCLI(t, "", args...); code != 2 || errs == "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a reason", args, code, errs)
		}
	}
}
