package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Options adjust a server. The zero value is a plain server without
// persistence.
type Options struct {
	// AOF turns on the append-only file with appendfsync always, so
	// everything Redis acknowledged survives a kill -9.
	AOF bool
	// Cluster starts the server with cluster-enabled yes (see StartCluster).
	Cluster bool
	// Args are extra redis-server arguments, e.g. "--maxmemory", "1mb".
	Args []string
}

// Server is one redis-server process owned by a test. Its methods are safe
// for concurrent use.
type Server struct {
	Addr string // 127.0.0.1:port, the same across restarts
	Port int

	t   testing.TB
	dir string

	mu   sync.Mutex // guards opts, cmd, exited, ended
	opts Options
	// ended is set when the test ends: a StopFor timer firing later must
	// not start a process nobody will kill.
	ended bool
	cmd   *exec.Cmd
	// exited is closed when cmd has been waited for.
	exited chan struct{}
}

// Start starts a redis-server on a free loopback port and kills it when t
// ends.
func Start(t testing.TB, opts *Options) *Server {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	s := &Server{t: t, dir: t.TempDir(), opts: *opts}
	t.Cleanup(func() {
		s.mu.Lock()
		s.ended = true
		s.mu.Unlock()
		s.Kill()
	})
	// A free port can be taken by someone else between our probe and
	// redis-server's bind: try a few.
	var err error
	for range 5 {
		s.Port, err = freePort(opts.Cluster)
		if err != nil {
			continue
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		if err = s.launch(); err == nil {
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", err)
	return nil
}

// URL is redis://127.0.0.1:port/0.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// errEnded refuses a launch after the test's cleanup.
var errEnded = errors.New("redistest: the test has ended")

// freePort returns a loopback port free now; for a cluster node the
// cluster bus port (port+10000) must be free too.
func freePort(cluster bool) (int, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !cluster {
			return port, nil
		}
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		bus.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair for a cluster node")
}

// launch starts redis-server with the current options on s.Port and waits
// until it is ready.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return errEnded
	}
	args := []string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--save", "", "--logfile", "",
		"--protected-mode", "no", "--daemonize", "no",
	}
	if s.opts.AOF {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	if s.opts.Cluster {
		args = append(args, "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes-"+strconv.Itoa(s.Port)+".conf",
			"--cluster-node-timeout", "5000")
	}
	args = append(args, s.opts.Args...)
	cmd := exec.Command("redis-server", args...)
	cmd.Dir = s.dir
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	ready := make(chan struct{})
	var tail []string // the log, for the error if it never gets ready
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			if !signalled {
				tail = append(tail, sc.Text())
				if strings.Contains(sc.Text(), "Ready to accept connections") {
					signalled = true
					close(ready)
				}
			}
		}
		cmd.Wait()
		close(exited)
	}()
	select {
	case <-ready:
	case <-exited:
		return fmt.Errorf("redis-server on port %d exited: %s", s.Port, strings.Join(tail, "\n"))
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redis-server on port %d not ready after 30s", s.Port)
	}
	if r, err := Do(s.Addr, "PING"); err != nil || len(r) != 1 || r[0] != "PONG" {
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redis-server on port %d: PING: %v %v", s.Port, r, err)
	}
	s.cmd, s.exited = cmd, exited
	return nil
}

// Kill kills the server with SIGKILL, by its PID, and waits for it. It is
// a no-op on a server already down. Data not in the AOF is lost.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	syscall.Kill(s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
}

// Restart kills the server and starts it again on the same port and in the
// same directory. With aof false nothing survives (the store lost every
// channel); with aof true the AOF written so far is replayed, so what Redis
// acknowledged survives, provided the server ran with AOF before too.
func (s *Server) Restart(aof bool) {
	s.t.Helper()
	s.Kill()
	s.mu.Lock()
	s.opts.AOF = aof
	s.mu.Unlock()
	if err := s.launch(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// StopFor kills the server now and starts it again on the same port after
// d, keeping its persistence setting. The returned channel is closed once
// it is ready again; a failure to restart is reported with t.Errorf.
func (s *Server) StopFor(d time.Duration) <-chan struct{} {
	s.Kill()
	back := make(chan struct{})
	time.AfterFunc(d, func() {
		defer close(back)
		if err := s.launch(); err != nil && !errors.Is(err, errEnded) {
			s.t.Errorf("redistest: start after stop: %v", err)
		}
	})
	return back
}

// Do runs one command on the server (see the package function Do).
func (s *Server) Do(args ...string) ([]string, error) { return Do(s.Addr, args...) }

// MustDo runs one command and fails the test on an error.
func (s *Server) MustDo(args ...string) []string {
	s.t.Helper()
	r, err := s.Do(args...)
	if err != nil {
		s.t.Fatalf("redistest: %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// KillPubSub closes every pub/sub connection of the server (CLIENT KILL
// TYPE pubsub) and returns how many it closed.
func (s *Server) KillPubSub() int {
	s.t.Helper()
	r := s.MustDo("CLIENT", "KILL", "TYPE", "pubsub")
	n, _ := strconv.Atoi(r[0])
	return n
}

// Keys returns every key of database 0.
func (s *Server) Keys() []string {
	s.t.Helper()
	return s.MustDo("KEYS", "*")
}
