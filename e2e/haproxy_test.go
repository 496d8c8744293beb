package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/redistest"
)

// TestHAProxyRecipe runs docs/operations.md's HAProxy configuration for
// three hubs on one Redis as the page gives it, its addresses swapped for
// free loopback ports: haproxy (Debian's) in front of three `duplex serve`
// child processes on one redis-server. A publisher, an SSE and a
// WebSocket subscriber all go through HAProxy; one hub is killed with
// SIGKILL by its PID mid-stream; every subscriber still receives every
// message once, in offset order, without a gap, and publishing through
// HAProxy goes on.
func TestHAProxyRecipe(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy is not installed (Debian: apt-get install haproxy; ./scripts/test installs it)")
	}
	cfg := recipeBlock(t, "../docs/operations.md", "### Three hubs and one Redis on one machine, behind HAProxy", "haproxy")

	// The recipe's addresses, in order: the frontend, then the hubs.
	addrRE := regexp.MustCompile(`127\.0\.0\.1:\d+`)
	addrs := addrRE.FindAllString(cfg, -1)
	if len(addrs) != 4 {
		t.Fatalf("the recipe has %d addresses %v, want the frontend and three hubs", len(addrs), addrs)
	}
	ports := map[string]string{}
	for _, a := range addrs {
		ports[a] = freeLoopback(t)
	}
	cfg = addrRE.ReplaceAllStringFunc(cfg, func(a string) string { return ports[a] })
	front := "http://" + ports[addrs[0]]

	rds := redistest.Start(t, nil)
	bin := buildDuplex(t)
	var hubs []*exec.Cmd
	for _, a := range addrs[1:] {
		hubs = append(hubs, startServe(t, bin, ports[a], "--engine", rds.URL()))
	}
	file := filepath.Join(t.TempDir(), "duplex-haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startChild(t, exec.Command(haproxy, "-f", file, "-db"))
	waitHTTP(t, front+"/healthz")

	const ch = "through-haproxy"
	pub := dialClient(t, front, fastOpts(client.Poll)) // publishes with POST
	var subs []*client.Subscription
	for _, tr := range []client.Transport{client.SSE, client.WebSocket} {
		subs = append(subs, subscribe(t, dialClient(t, front, fastOpts(tr)), []string{ch}, nil))
	}
	// The subscriptions are in place on their hubs (Subscribe returned)
	// before the channel's first publication, so nothing precedes them.
	publishN(t, pub, ch, 1, 20)
	for _, s := range subs {
		expectMessages(t, s, map[string][2]int{ch: {1, 20}})
	}

	// The hub holding a subscriber dies; the subscriber reconnects
	// through HAProxy to another, with its cursor.
	victim := -1
	for i, a := range addrs[1:] {
		if subscribers(t, "http://"+ports[a], ch) > 0 {
			victim = i
			break
		}
	}
	if victim < 0 {
		t.Fatal("no hub has a subscriber of the channel")
	}
	if err := syscall.Kill(hubs[victim].Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	hubs[victim].Wait()
	publishN(t, pub, ch, 21, 60)
	for _, s := range subs {
		expectMessages(t, s, map[string][2]int{ch: {21, 60}})
	}
}

// subscribers is what the hub at base says of channel's subscribers.
func subscribers(t *testing.T, base, channel string) int {
	t.Helper()
	resp, err := http.Get(base + "/v1/channels/" + channel)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct{ Subscribers int }
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatalf("GET %s/v1/channels/%s: %v", base, channel, err)
	}
	return info.Subscribers
}

// recipeBlock returns the first ```lang block after heading in the
// markdown file at path.
func recipeBlock(t *testing.T, path, heading, lang string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no heading %q", path, heading)
	}
	_, after, ok = strings.Cut(after, "\n```"+lang+"\n")
	if !ok {
		t.Fatalf("%s has no ```%s block after %q", path, lang, heading)
	}
	block, _, ok := strings.Cut(after, "\n```\n")
	if !ok {
		t.Fatalf("%s: the ```%s block after %q does not end", path, lang, heading)
	}
	return block + "\n"
}

// freeLoopback returns a 127.0.0.1 address free now.
func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// buildDuplex builds ./cmd/duplex into a temporary directory.
func buildDuplex(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "duplex")
	build := exec.Command("go", "build", "-o", bin, "./cmd/duplex")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/duplex: %v\n%s", err, out)
	}
	return bin
}

// startChild starts cmd and, when t ends, kills it by its PID (SIGKILL)
// and waits for it; one already waited for is left alone.
func startChild(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
		}
	})
}

// startServe starts `duplex serve --listen addr args...` and waits until
// it says it listens.
func startServe(t *testing.T, bin, addr string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", addr}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	startChild(t, cmd)
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "listening on http://"+addr) {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("duplex serve --listen %s exited before listening", addr)
		}
	case <-time.After(30 * time.Second): // a hang guard
		t.Fatalf("duplex serve --listen %s: not listening after 30s", addr)
	}
	return cmd
}

// waitHTTP asks url until it answers 200: a proxy starting up refuses
// connections, then may answer 503 until its first health checks pass.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a hang guard
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	last := "no answer"
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond): // polling a process we do not control
		}
	}
	t.Fatalf("%s never answered 200: %s", url, last)
}
