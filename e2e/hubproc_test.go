package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The duplex binary the hub-process tests run, built once per test binary
// (the first test that needs it pays for the build) and removed by
// TestMain.
var (
	duplexBinOnce sync.Once
	duplexBinDir  string
	duplexBin     string
	duplexBinErr  error
)

// builtDuplex returns the path of a duplex binary built from this checkout.
func builtDuplex(t *testing.T) string {
	t.Helper()
	duplexBinOnce.Do(func() {
		duplexBinDir, duplexBinErr = os.MkdirTemp("", "duplex-e2e-bin-")
		if duplexBinErr != nil {
			return
		}
		duplexBin = filepath.Join(duplexBinDir, "duplex")
		build := exec.Command("go", "build", "-o", duplexBin, "./cmd/duplex")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			duplexBinErr = fmt.Errorf("go build ./cmd/duplex: %v\n%s", err, out)
		}
	})
	if duplexBinErr != nil {
		t.Fatal(duplexBinErr)
	}
	return duplexBin
}

// hubProc is one `duplex serve` child process owned by a test: it listens
// on a port of 127.0.0.1 the kernel chose, which it names on its
// "listening on" line. When the test ends it gets SIGTERM and must exit
// cleanly; a hub that died by itself before that (a crash) fails the test.
type hubProc struct {
	Name string
	URL  string // http://127.0.0.1:port (https:// with --tls-cert)
	Addr string // 127.0.0.1:port
	PID  int

	t      *testing.T
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for

	mu     sync.Mutex // guards log, killed, waitErr
	log    strings.Builder
	killed bool
	// waitErr is cmd.Wait's result, valid once exited is closed.
	waitErr error
}

// startHubProc runs `duplex serve --listen 127.0.0.1:0 --engine engineURL`
// plus args, and returns once the hub says where it listens (it says so
// only after its engine answered).
func startHubProc(t *testing.T, name, engineURL string, args ...string) *hubProc {
	t.Helper()
	bin := builtDuplex(t)
	argv := append([]string{"serve", "--listen", "127.0.0.1:0", "--engine", engineURL}, args...)
	cmd := exec.Command(bin, argv...)
	cmd.Env = hubProcEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &hubProc{Name: name, t: t, cmd: cmd, exited: make(chan struct{}), PID: cmd.Process.Pid}
	listening := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			h.mu.Lock()
			h.log.WriteString(line + "\n")
			h.mu.Unlock()
			if _, rest, ok := strings.Cut(line, "hub listening on "); ok && !sent {
				u, _, _ := strings.Cut(rest, " ")
				listening <- u // http://ADDR, or https://ADDR with --tls-cert
				sent = true
			}
		}
		err := cmd.Wait()
		h.mu.Lock()
		h.waitErr = err
		h.mu.Unlock()
		close(h.exited)
	}()
	t.Cleanup(h.stop)
	select {
	case h.URL = <-listening:
	case <-h.exited:
		t.Fatalf("hub %s exited before listening: %v\n%s", name, h.waitErr, h.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("hub %s did not say it listens within 30s:\n%s", name, h.Log())
	}
	_, h.Addr, _ = strings.Cut(h.URL, "://")
	return h
}

// hubProcEnv is the test's environment without DUPLEX_* and proxy
// variables, so that nothing from the caller's shell changes the hubs.
func hubProcEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DUPLEX_") || strings.HasSuffix(strings.ToLower(k), "_proxy") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Log returns what the hub wrote on standard error so far.
func (h *hubProc) Log() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.log.String()
}

// Kill9 kills the hub with SIGKILL, by its PID, and waits for it.
func (h *hubProc) Kill9() {
	h.mu.Lock()
	h.killed = true
	h.mu.Unlock()
	syscall.Kill(h.PID, syscall.SIGKILL)
	<-h.exited
}

// Running reports whether the process has not exited.
func (h *hubProc) Running() bool {
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

// Health returns the status of GET /healthz.
func (h *hubProc) Health() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.URL+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// stop ends the hub with SIGTERM and checks that it exits cleanly; a hub
// that exited before without being killed is a crash.
func (h *hubProc) stop() {
	defer func() {
		if h.t.Failed() {
			h.t.Logf("hub %s (pid %d) said:\n%s", h.Name, h.PID, h.Log())
		}
	}()
	h.mu.Lock()
	killed := h.killed
	h.mu.Unlock()
	select {
	case <-h.exited:
		if !killed {
			h.t.Errorf("hub %s (pid %d) exited by itself: %v\n%s", h.Name, h.PID, h.waitErr, h.Log())
		}
		return
	default:
	}
	syscall.Kill(h.PID, syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(h.PID, syscall.SIGKILL)
		<-h.exited
		h.t.Errorf("hub %s (pid %d) did not exit within 20s of SIGTERM\n%s", h.Name, h.PID, h.Log())
		return
	}
	h.mu.Lock()
	err := h.waitErr
	h.mu.Unlock()
	if err != nil {
		h.t.Errorf("hub %s (pid %d) after SIGTERM: %v\n%s", h.Name, h.PID, err, h.Log())
	}
}

// startHubProcs starts n hubs on one engine.
func startHubProcs(t *testing.T, n int, engineURL string, args ...string) []*hubProc {
	t.Helper()
	hubs := make([]*hubProc, n)
	for i := range hubs {
		hubs[i] = startHubProc(t, fmt.Sprintf("hub%d", i), engineURL, args...)
	}
	return hubs
}

func hubURLs(hubs []*hubProc) []string {
	u := make([]string, len(hubs))
	for i, h := range hubs {
		u[i] = h.URL
	}
	return u
}
