package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProxyAccessLogSurvivesSIGTERM runs `duplex proxy` (this test binary
// standing in, see TestMain) with its access log on, opens tunnels that
// end just before a SIGTERM, and checks that every tunnel's line is in the
// log when the process has exited: the buffered log loses nothing on
// shutdown. One tunnel is still open at the signal; it is closed by the
// client during the grace period and must be logged too.
func TestProxyAccessLogSurvivesSIGTERM(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "proxy", "--listen", "127.0.0.1:0", "--allow-private")
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	var logb bytes.Buffer
	cmd.Stderr = &logb
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // by PID: the process this test started
	sc := bufio.NewScanner(stdout)
	var addr string
	for sc.Scan() {
		if _, rest, ok := strings.Cut(sc.Text(), "listening on "); ok {
			addr = strings.Fields(rest)[0]
			break
		}
	}
	if addr == "" {
		t.Fatalf("no listen line")
	}
	go io.Copy(io.Discard, stdout)

	const n = 200
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n", echo.Addr())
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, " 200 ") {
			t.Fatalf("tunnel %d: %q %v", i, line, err)
		}
		for line != "\r\n" && err == nil {
			line, err = br.ReadString('\n')
		}
		c.Write([]byte{'x'})
		if b, err := br.ReadByte(); err != nil || b != 'x' {
			t.Fatalf("tunnel %d echo: %v", i, err)
		}
		c.Close()
	}
	// One tunnel open across the signal.
	last, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(last, "CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n", echo.Addr())
	last.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(last)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, " 200 ") {
		t.Fatalf("last tunnel: %q %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	last.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("proxy exit: %v\n%s", err, logb.String())
	}
	ok := 0
	for _, line := range strings.Split(logb.String(), "\n") {
		var l struct{ Proto, Outcome string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Proto == "connect" && l.Outcome == "ok" {
			ok++
		}
	}
	if ok != n+1 {
		t.Fatalf("%d tunnel lines in the log after SIGTERM, want %d:\n%s", ok, n+1, logb.String())
	}
}
