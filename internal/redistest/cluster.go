package redistest

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of three masters (no replicas) on loopback,
// every node owned by the test.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts three redis-server --cluster-enabled yes, joins them
// with redis-cli --cluster create, and waits until every node says
// cluster_state:ok. Every node is killed when t ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for range 3 {
		n := Start(t, &Options{Cluster: true})
		c.Nodes = append(c.Nodes, n)
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// The slots are assigned; the nodes learn of each other by gossip,
	// which has no event to wait on: ask each until it agrees.
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range c.Nodes {
		for !strings.Contains(strings.Join(n.MustDo("CLUSTER", "INFO"), ""), "cluster_state:ok") {
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster not ok after 30s: %v", n.MustDo("CLUSTER", "INFO"))
			}
			time.Sleep(20 * time.Millisecond) // polling a condition, not standing in for it
		}
	}
	return c
}

// Addrs returns the nodes' addresses.
func (c *Cluster) Addrs() []string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return a
}

// URL is the cluster form the Redis engine parses:
// redis+cluster://h1:p1,h2:p2,h3:p3.
func (c *Cluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

// Keys returns the keys of every node.
func (c *Cluster) Keys() []string {
	var all []string
	for _, n := range c.Nodes {
		all = append(all, n.Keys()...)
	}
	return all
}
