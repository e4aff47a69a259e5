package redistest

import (
	"strings"
	"testing"
)

func TestStartKillRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping after Start: %v", err)
	}
	if out, err := s.Cli("SET", "k", "v"); err != nil || out != "OK" {
		t.Fatalf("SET: %q %v", out, err)
	}
	s.Kill()
	if err := ping(s.Addr()); err == nil {
		t.Fatal("ping answered after Kill")
	}
	s.Restart()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping after Restart: %v", err)
	}
	if out, _ := s.Cli("GET", "k"); out != "" {
		t.Fatalf("data survived a restart without persistence: %q", out)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := StartCluster(t)
	if len(c.Addrs()) != ClusterSize {
		t.Fatalf("addrs %v", c.Addrs())
	}
	seen := map[int]bool{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		n := c.NodeForKey(k)
		if n == nil {
			t.Fatalf("no node for key %q", k)
		}
		seen[n.Port()] = true
		out, err := n.Cli("SET", k, "1")
		if err != nil || out != "OK" {
			t.Fatalf("SET %s on its owner %s: %q %v", k, n.Addr(), out, err)
		}
	}
	if len(seen) < 2 {
		t.Fatalf("8 keys all on one node: %v", seen)
	}
	out, _ := c.Nodes[0].Cli("CLUSTER", "INFO")
	if !strings.Contains(out, "cluster_slots_ok:16384") {
		t.Fatalf("cluster info: %s", out)
	}
}
