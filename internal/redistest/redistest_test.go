package redistest

import (
	"fmt"
	"strings"
	"testing"
	"time"
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

// TestSentinel: the replica follows, a paused replica misses writes, and a kill -9 of
// the primary gets the lagging replica promoted (without the writes it missed).
func TestSentinel(t *testing.T) {
	t.Parallel()
	s := started(t, StartSentinel)
	primary, replica := s.Master(), s.Replica()
	if primary != s.Data[0] || replica != s.Data[1] {
		t.Fatalf("master %v, replica %v; want Data[0] and Data[1]", primary, replica)
	}
	if out, err := primary.Cli("SET", "k", "1"); err != nil || out != "OK" {
		t.Fatalf("SET on the primary: %q %v", out, err)
	}
	waitUntil(t, 5*time.Second, "the write on the replica", func() error {
		if out, _ := replica.Cli("GET", "k"); out != "1" {
			return fmt.Errorf("GET k on the replica: %q", out)
		}
		return nil
	})
	replica.PauseReplication(t)
	if out, err := primary.Cli("SET", "k", "2"); err != nil || out != "OK" {
		t.Fatalf("SET on the primary: %q %v", out, err)
	}
	primary.Kill()
	killed := time.Now()
	m := s.WaitNewMaster(t, primary)
	t.Logf("replica promoted %v after the kill", time.Since(killed))
	if m != replica {
		t.Fatalf("new master %s, want the replica %s", m.Addr(), replica.Addr())
	}
	if out, _ := m.Cli("GET", "k"); out != "1" {
		t.Fatalf("the lagging replica holds k=%q after promotion, want the value before the pause, 1", out)
	}
	if out, err := m.Cli("SET", "k", "3"); err != nil || out != "OK" {
		t.Fatalf("SET on the new master: %q %v", out, err)
	}
	// The old primary comes back as a replica of the new one, and the setup can fail
	// over again, now by request.
	primary.RestartAsReplicaOf(m)
	timed(t, "ready again after the restart", func() { s.WaitReady(t) })
	// The replica now is the old primary, unless the sentinels failed over once more
	// on their own while it came back (a master that missed their pings on a loaded
	// host): Failover promotes whichever is the replica then, and the write made on
	// the first new master must be on it.
	var got *Server
	timed(t, "SENTINEL FAILOVER done", func() { got = s.Failover(t) })
	if got != primary {
		t.Logf("the sentinels had failed over on their own meanwhile: SENTINEL FAILOVER promoted %s", got.Addr())
	}
	if out, _ := got.Cli("GET", "k"); out != "3" {
		t.Fatalf("k=%q after the second failover, want 3", out)
	}
}

// TestClusterWithReplicas: a killed primary is replaced by its replica; a paused
// replica promoted with CLUSTER FAILOVER FORCE lacks the writes it missed.
func TestClusterWithReplicas(t *testing.T) {
	t.Parallel()
	c := started(t, StartClusterWithReplicas)
	if len(c.Replicas) != ClusterSize {
		t.Fatalf("%d replicas", len(c.Replicas))
	}
	for i, m := range c.Nodes {
		waitUntil(t, 5*time.Second, "the master's view of its replica", func() error {
			if r := c.ReplicaOf(m); r != c.Replicas[i] {
				return fmt.Errorf("replica of %s is %v, want %s", m.Addr(), r, c.Replicas[i].Addr())
			}
			return nil
		})
	}
	const key = "{m1}:k"
	p := c.PrimaryForKey(key)
	r := c.ReplicaOf(p)
	if out, err := p.Cli("SET", key, "1"); err != nil || out != "OK" {
		t.Fatalf("SET: %q %v", out, err)
	}
	waitUntil(t, 5*time.Second, "the write on the replica", func() error {
		if out, _ := r.Session("READONLY", "GET "+key); out != "OK\n1" {
			return fmt.Errorf("READONLY, GET on the replica: %q", out)
		}
		return nil
	})
	r.PauseReplication(t)
	if out, err := p.Cli("SET", key, "2"); err != nil || out != "OK" {
		t.Fatalf("SET: %q %v", out, err)
	}
	timed(t, "forced failover", func() { r.FailoverForce(t) })
	if got := c.WaitNewPrimaryForKey(t, key, p); got != r {
		t.Fatalf("new primary %s, want %s", got.Addr(), r.Addr())
	}
	if out, _ := r.Cli("GET", key); out != "1" {
		t.Fatalf("the forced lagging replica holds %q, want 1", out)
	}
	r.ResumeReplication(t)
	timed(t, "healthy again", func() { c.WaitHealthy(t) }) // the old primary is now r's replica, in sync
	if got := c.ReplicaOf(r); got != p {
		t.Fatalf("replica of the new primary: %v, want the old primary %s", got, p.Addr())
	}
	r.Kill()
	began := time.Now()
	if got := c.WaitNewPrimaryForKey(t, key, r); got != p {
		t.Fatalf("after killing %s the primary is %s, want %s", r.Addr(), got.Addr(), p.Addr())
	}
	t.Logf("replica promoted %v after the kill", time.Since(began))
	if out, _ := p.Cli("GET", key); out != "1" {
		t.Fatalf("%q after the second failover, want 1", out)
	}
}

// started starts a setup with start and logs how long that took.
func started[T any](t *testing.T, start func(testing.TB) T) T {
	t.Helper()
	var v T
	timed(t, "started", func() { v = start(t) })
	return v
}

// timed runs f and logs how long it took, as "<what> in <duration>".
func timed(t *testing.T, what string, f func()) {
	t.Helper()
	began := time.Now()
	f()
	t.Logf("%s in %v", what, time.Since(began))
}
