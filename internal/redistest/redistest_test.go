package redistest

import (
	"bufio"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRestartKeepsDataOnlyWithAOF(t *testing.T) {
	t.Parallel()
	s := Start(t, nil)
	s.MustDo("SET", "k", "v")
	s.Restart(false)
	if got := s.MustDo("GET", "k"); got[0] != "" {
		t.Fatalf("without persistence the key survived: %q", got)
	}
	s.Restart(true) // AOF from now on
	s.MustDo("SET", "k", "v2")
	s.Restart(true)
	if got := s.MustDo("GET", "k"); got[0] != "v2" {
		t.Fatalf("with AOF: GET k = %q, want v2", got)
	}
	if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") {
		t.Fatalf("URL %q", s.URL())
	}
}

func TestKillPubSub(t *testing.T) {
	t.Parallel()
	s := Start(t, nil)
	c, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	c.Write([]byte("*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n"))
	var confirm []string
	if err := readReply(r, &confirm); err != nil || !slices.Equal(confirm, []string{"subscribe", "c", "1"}) {
		t.Fatalf("subscribe: %v %v", confirm, err)
	}
	if n := s.KillPubSub(); n != 1 {
		t.Fatalf("killed %d pub/sub clients, want 1", n)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("the subscriber's connection is still open")
	}
}

func TestStopFor(t *testing.T) {
	t.Parallel()
	s := Start(t, nil)
	back := s.StopFor(200 * time.Millisecond)
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING answered while stopped")
	}
	<-back
	if got := s.MustDo("PING"); got[0] != "PONG" {
		t.Fatalf("PING after restart: %v", got)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t)
	for _, n := range c.Nodes {
		info := strings.Join(n.MustDo("CLUSTER", "INFO"), "")
		if !strings.Contains(info, "cluster_known_nodes:3") {
			t.Fatalf("node %s: %s", n.Addr, info)
		}
		r := n.MustDo("CLUSTER", "COUNTKEYSINSLOT", "0")
		if len(r) != 1 {
			t.Fatalf("COUNTKEYSINSLOT: %v", r)
		}
	}
	// A key lands on exactly one node; the others redirect.
	moved := 0
	for _, n := range c.Nodes {
		if _, err := n.Do("SET", "somekey", "1"); err != nil {
			if !strings.HasPrefix(err.Error(), "MOVED") {
				t.Fatalf("SET on %s: %v", n.Addr, err)
			}
			moved++
		}
	}
	if moved != 2 || len(c.Keys()) != 1 {
		t.Fatalf("moved %d, keys %v", moved, c.Keys())
	}
	if !strings.HasPrefix(c.URL(), "redis+cluster://127.0.0.1:") || strings.Count(c.URL(), ",") != 2 {
		t.Fatalf("URL %q", c.URL())
	}
}
