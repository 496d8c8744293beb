package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duplexhq/duplex/client"
	"github.com/duplexhq/duplex/internal/hubtest"
)

// freePort returns a port on 127.0.0.1 that was free a moment ago, for
// third-party servers that cannot listen on :0 and report it.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPeer starts a third-party server as a child process (in its own
// process group, so that its forked helpers go with it), waits until it
// accepts connections on port by polling, and kills it by PID when the
// test ends.
func startPeer(t *testing.T, port int, name string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is missing: run ./scripts/test, which installs the test peers (%v)", name, err)
	}
	cmd := exec.Command(name, args...)
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		// TERM first, so that the server reaps its own children (dante
		// forks helpers); then KILL whatever of its group is left.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the group this test started
			<-exited
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s exited before listening: %v\n%s", name, err, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("%s not listening on %s after 15s:\n%s", name, addr, b)
		}
		time.Sleep(20 * time.Millisecond) // polling for readiness
	}
}

// danteTCP and danteUDP are the socks rules startDante runs dante with:
// TCP CONNECT only (what the client tests need), or CONNECT and UDP
// ASSOCIATE with the replies let back in (what proxy check probes).
const (
	danteTCP = `socks pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
  protocol: tcp
}
`
	danteUDP = `socks pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
  command: connect udpassociate
  protocol: tcp udp
}
socks pass {
  from: 0.0.0.0/0 to: 127.0.0.0/8
  command: udpreply
  protocol: udp
}
`
)

// startDante runs Debian's danted on a free loopback port with the given
// socks rules (danteTCP or danteUDP) and returns its address.
func startDante(t *testing.T, rules string) string {
	t.Helper()
	port := freePort(t)
	users := ""
	if os.Geteuid() == 0 {
		users = "user.privileged: root\nuser.unprivileged: nobody\n"
	}
	conf := fmt.Sprintf(`logoutput: stderr
internal: 127.0.0.1 port = %d
external: 127.0.0.1
socksmethod: none
clientmethod: none
%sclient pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
}
%s`, port, users, rules)
	path := filepath.Join(t.TempDir(), "danted.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startPeer(t, port, "danted", "-f", path)
	return "127.0.0.1:" + strconv.Itoa(port)
}

func startTinyproxy(t *testing.T) string {
	t.Helper()
	port := freePort(t)
	users := ""
	if os.Geteuid() == 0 {
		users = "User nobody\nGroup nogroup\n"
	}
	// No ConnectPort line: CONNECT to any port. Quiet logging.
	conf := fmt.Sprintf("Port %d\nListen 127.0.0.1\nTimeout 600\nLogLevel Critical\nMaxClients 100\nAllow 127.0.0.1\n%s", port, users)
	path := filepath.Join(t.TempDir(), "tinyproxy.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startPeer(t, port, "tinyproxy", "-d", "-c", path)
	return "127.0.0.1:" + strconv.Itoa(port)
}

func startSquid(t *testing.T) string {
	t.Helper()
	port := freePort(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil { // squid drops to its own user
		t.Fatal(err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "cache_effective_user proxy\n"
	}
	// CONNECT to any port (no SSL_ports rule), no cache, no access log.
	conf := fmt.Sprintf(`http_port 127.0.0.1:%d
http_access allow all
cache deny all
access_log none
cache_log %s/cache.log
pid_filename %s/squid.pid
coredump_dir %s
shutdown_lifetime 0 seconds
%s`, port, dir, dir, dir, user)
	path := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startPeer(t, port, "squid", "-N", "-f", path)
	return "127.0.0.1:" + strconv.Itoa(port)
}

// TestClientThroughThirdPartyProxies: every transport through proxies
// nobody here wrote: Debian's dante-server (SOCKS5 and SOCKS4), tinyproxy
// and squid (HTTP: CONNECT for WebSocket, which tinyproxy would otherwise
// strip the Upgrade of; forwarding for the others).
func TestClientThroughThirdPartyProxies(t *testing.T) {
	hubtest.CheckLeaks(t)
	dante := startDante(t, danteTCP)
	tiny := startTinyproxy(t)
	squid := startSquid(t)
	h := hubtest.Start(t, nil) // stops before the proxies
	for _, px := range []string{"socks5://" + dante, "socks4://" + dante, "http://" + tiny, "http://" + squid} {
		for _, tr := range append(explicitTransports, client.Auto) {
			scheme, _, _ := strings.Cut(px, ":")
			name := "dante-" + scheme
			switch px {
			case "http://" + tiny:
				name = "tinyproxy"
			case "http://" + squid:
				name = "squid"
			}
			t.Run(name+"/"+string(tr), func(t *testing.T) {
				opts := fastOpts(tr)
				opts.Proxy = px
				c := dialClient(t, h.URL, opts)
				ch := "peer-" + name + "-" + string(tr)
				s := subscribe(t, c, []string{ch}, nil)
				if tr == client.Auto && s.Transport() != client.WebSocket {
					t.Fatalf("auto fell back to %s through %s", s.Transport(), name)
				}
				publishN(t, c, ch, 1, 3)
				expectMessages(t, s, map[string][2]int{ch: {1, 3}})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if hist, err := c.History(ctx, ch, 0, 10); err != nil || len(hist.Messages) != 3 {
					t.Fatalf("history: %v %+v", err, hist)
				}
			})
		}
	}
	// dante does not serve SOCKS4a: the client says so instead of hanging.
	t.Run("dante-socks4a-refused", func(t *testing.T) {
		opts := fastOpts(client.WebSocket)
		opts.Proxy = "socks4a://" + dante
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, port, _ := net.SplitHostPort(h.Addr)
		c, err := client.Dial(ctx, "http://localhost:"+port, opts)
		if err == nil {
			c.Close()
			t.Fatal("dial through dante with SOCKS4a succeeded")
		}
		if !strings.Contains(err.Error(), "socks4a") || !strings.Contains(err.Error(), "91") {
			t.Fatalf("error %v, want a socks4a rejection (91)", err)
		}
	})
}
