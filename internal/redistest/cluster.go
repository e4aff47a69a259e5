package redistest

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ClusterSize is the number of masters StartCluster runs.
const ClusterSize = 3

// ClusterNodeTimeout is the nodes' cluster-node-timeout: a primary unreachable this long
// is marked failed and its replica takes over (about a second later).
const ClusterNodeTimeout = 2 * time.Second

// Cluster is a Redis Cluster of ClusterSize masters, and with
// StartClusterWithReplicas one replica each, owned by a test.
type Cluster struct {
	// Nodes are the masters the cluster was created with (after a failover, a node of
	// Nodes may be a replica: PrimaryForKey says who serves a key now).
	Nodes []*Server
	// Replicas[i] was started as the replica of Nodes[i] (StartClusterWithReplicas).
	Replicas []*Server
}

// Addrs returns the initial masters' addresses (seed nodes).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// All returns every node, masters then replicas.
func (c *Cluster) All() []*Server { return append(append([]*Server{}, c.Nodes...), c.Replicas...) }

// NodeForKey returns the master that owns key's slot (CLUSTER KEYSLOT; a channel
// name hashes like a key), or nil. It asks the first node that answers.
func (c *Cluster) NodeForKey(key string) *Server {
	for _, n := range c.All() {
		out, err := n.Cli("CLUSTER", "KEYSLOT", key)
		if err != nil {
			continue
		}
		slot, err := strconv.Atoi(out)
		if err != nil {
			return nil
		}
		if s := c.nodeForSlot(n, slot); s != nil {
			return s
		}
	}
	return nil
}

// PrimaryForKey is NodeForKey: the node serving key's slot now.
func (c *Cluster) PrimaryForKey(key string) *Server { return c.NodeForKey(key) }

// StartCluster runs ClusterSize cluster-enabled masters on free loopback ports, joins
// them with `redis-cli --cluster create`, and waits until every node reports
// cluster_state:ok. The nodes are killed in t.Cleanup.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	c.create(t, ClusterSize, 0)
	c.WaitHealthy(t)
	return c
}

// StartClusterWithReplicas is StartCluster with one replica per master: Replicas[i]
// replicates Nodes[i]. It returns once every node reports cluster_state:ok and knows
// all 2×ClusterSize nodes, and every replica is in sync.
func StartClusterWithReplicas(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	c.create(t, 2*ClusterSize, 1)
	c.WaitHealthy(t)
	// redis-cli chose who replicates whom: read it back from the replicas.
	var masters []*Server
	replicaOf := map[string]*Server{}
	for _, n := range c.Nodes {
		info, err := n.Info("replication")
		if err != nil {
			t.Fatal(err)
		}
		if info["role"] == "master" {
			masters = append(masters, n)
		} else {
			replicaOf["127.0.0.1:"+info["master_port"]] = n
		}
	}
	c.Nodes = masters
	for _, m := range masters {
		r := replicaOf[m.Addr()]
		if r == nil {
			t.Fatalf("redistest: master %s has no replica: %s", m.Addr(), c)
		}
		c.Replicas = append(c.Replicas, r)
	}
	if len(masters) != ClusterSize {
		t.Fatalf("redistest: %d masters after --cluster create: %s", len(masters), c)
	}
	return c
}

// create starts n cluster-enabled nodes and joins them with `redis-cli --cluster
// create --cluster-replicas replicas`.
func (c *Cluster) create(t testing.TB, n, replicas int) {
	t.Helper()
	bin, cliBin := binaries(t)
	for i := 0; i < n; i++ {
		c.Nodes = append(c.Nodes, start(t, bin, clusterNode))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cliBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
}

// WaitHealthy waits until every live node reports cluster_state:ok and knows every node
// (dead ones included: a killed node stays known, marked failed), and every live
// replica is in sync with its primary.
func (c *Cluster) WaitHealthy(t testing.TB) {
	t.Helper()
	all := c.All()
	waitUntil(t, FailoverTimeout, "the cluster healthy", func() error {
		for _, n := range all {
			if !n.Alive() {
				continue
			}
			info, err := n.clusterInfo()
			if err != nil || info["cluster_state"] != "ok" || info["cluster_known_nodes"] != strconv.Itoa(len(all)) {
				return fmt.Errorf("node %s: %v: cluster_state %q, cluster_known_nodes %q of %d", n.Addr(), err, info["cluster_state"], info["cluster_known_nodes"], len(all))
			}
			switch n.Role() {
			case "slave":
				if err := n.Replicating(); err != nil {
					return err
				}
			case "master":
				// A primary replaced by a forced failover turns into a replica only once
				// it hears of the new configuration.
				if !c.owners(n)[n] {
					return fmt.Errorf("node %s reports role master but serves no slots", n.Addr())
				}
			}
		}
		return nil
	})
}

// ReplicaOf is a live replica of primary (by the replicas' own INFO replication), or
// nil.
func (c *Cluster) ReplicaOf(primary *Server) *Server {
	for _, n := range c.All() {
		if n == primary {
			continue
		}
		if info, err := n.Info("replication"); err == nil && info["role"] == "slave" && info["master_port"] == strconv.Itoa(primary.port) {
			return n
		}
	}
	return nil
}

// owners is the set of nodes that serve slots according to n's CLUSTER SLOTS.
func (c *Cluster) owners(n *Server) map[*Server]bool {
	ranges, err := c.slots(n)
	if err != nil {
		return nil
	}
	set := map[*Server]bool{}
	for _, r := range ranges {
		if s := c.byPort(r.port); s != nil {
			set[s] = true
		}
	}
	return set
}

// slotRange is one master's range of slots in a CLUSTER SLOTS answer.
type slotRange struct{ lo, hi, port int }

// slots parses n's CLUSTER SLOTS. redis-cli prints it flat: start, end, ip, port, id
// (the master), then the replicas' ip, port, id.
func (c *Cluster) slots(n *Server) ([]slotRange, error) {
	out, err := n.Cli("CLUSTER", "SLOTS")
	if err != nil {
		return nil, err
	}
	var ranges []slotRange
	f := strings.Fields(out)
	for i := 0; i+3 < len(f); i++ {
		lo, err1 := strconv.Atoi(f[i])
		hi, err2 := strconv.Atoi(f[i+1])
		if err1 != nil || err2 != nil || f[i+2] != "127.0.0.1" {
			continue
		}
		if port, err := strconv.Atoi(f[i+3]); err == nil {
			ranges = append(ranges, slotRange{lo, hi, port})
		}
	}
	return ranges, nil
}

// byPort is the node listening on port, or nil.
func (c *Cluster) byPort(port int) *Server {
	for _, s := range c.All() {
		if s.port == port {
			return s
		}
	}
	return nil
}

// WaitNewPrimaryForKey waits until key's slot is served by a node other than old,
// that node reports role:master and every live node agrees and reports
// cluster_state:ok. It returns the new primary.
func (c *Cluster) WaitNewPrimaryForKey(t testing.TB, key string, old *Server) *Server {
	t.Helper()
	var p *Server
	waitUntil(t, FailoverTimeout, "a new primary for "+key+" instead of "+old.Addr(), func() error {
		p = nil
		for _, n := range c.All() {
			if n == old || !n.Alive() {
				continue
			}
			out, err := n.Cli("CLUSTER", "KEYSLOT", key)
			if err != nil {
				return fmt.Errorf("%s: CLUSTER KEYSLOT: %v", n.Addr(), err)
			}
			slot, _ := strconv.Atoi(out)
			owner := c.nodeForSlot(n, slot)
			switch {
			case owner == nil:
				return fmt.Errorf("%s names no owner of slot %d", n.Addr(), slot)
			case owner == old:
				return fmt.Errorf("%s still names %s for slot %d", n.Addr(), old.Addr(), slot)
			case p != nil && owner != p:
				return fmt.Errorf("nodes disagree on slot %d: %s and %s", slot, p.Addr(), owner.Addr())
			}
			p = owner
			if info, err := n.clusterInfo(); err != nil || info["cluster_state"] != "ok" {
				return fmt.Errorf("%s: cluster_state %q: %v", n.Addr(), info["cluster_state"], err)
			}
		}
		if p == nil {
			return errNoAnswer
		}
		if r := p.Role(); r != "master" {
			return fmt.Errorf("%s owns the slot but reports role %q", p.Addr(), r)
		}
		return nil
	})
	return p
}

// FailoverForce makes this replica take over its primary's slots at once, without the
// primary's agreement or the data check (CLUSTER FAILOVER FORCE), and returns when the
// node reports role:master.
func (s *Server) FailoverForce(t testing.TB) {
	t.Helper()
	if out, err := s.Cli("CLUSTER", "FAILOVER", "FORCE"); err != nil || out != "OK" {
		t.Fatalf("redistest: CLUSTER FAILOVER FORCE on %s: %v %s", s.Addr(), err, out)
	}
	asked := time.Now()
	waitUntil(t, FailoverTimeout, s.Addr()+" to become a primary after CLUSTER FAILOVER FORCE", func() error {
		r := s.Role()
		if r == "master" {
			return nil
		}
		// Redis gives up a manual failover whose election has not ended within its
		// manual-failover timeout (5 s; on a loaded machine a master's vote can come
		// later), and the node stays a replica: ask again, as an operator would.
		if time.Since(asked) > forceRetry {
			out, err := s.Cli("CLUSTER", "FAILOVER", "FORCE")
			asked = time.Now()
			return fmt.Errorf("role %q; asked again: %q %v", r, out, err)
		}
		return fmt.Errorf("role %q", r)
	})
}

// forceRetry is how long FailoverForce waits before asking again: past Redis's
// manual-failover timeout (CLUSTER_MF_TIMEOUT, 5 s), after which the request is void.
const forceRetry = 6 * time.Second

// clusterInfo is CLUSTER INFO as a map.
func (s *Server) clusterInfo() (map[string]string, error) {
	out, err := s.Cli("CLUSTER", "INFO")
	if err != nil {
		return nil, fmt.Errorf("CLUSTER INFO on %s: %v: %s", s.Addr(), err, out)
	}
	return parseInfo(out), nil
}

// clusterNode configures a cluster-enabled node.
func clusterNode(s *Server) error {
	// The cluster bus needs its own free port; port+10000 may be out of range.
	busPort, err := freePort()
	if err != nil {
		return err
	}
	s.args = []string{
		"--cluster-enabled", "yes",
		"--cluster-port", strconv.Itoa(busPort),
		"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout / time.Millisecond)),
		"--cluster-config-file", "nodes.conf",
	}
	return nil
}

// nodeForSlot asks n's CLUSTER SLOTS which master serves slot.
func (c *Cluster) nodeForSlot(n *Server, slot int) *Server {
	ranges, err := c.slots(n)
	if err != nil {
		return nil
	}
	for _, r := range ranges {
		if slot >= r.lo && slot <= r.hi {
			if s := c.byPort(r.port); s != nil {
				return s
			}
		}
	}
	return nil
}

// String lists the nodes, for failure messages.
func (c *Cluster) String() string {
	var parts []string
	for _, n := range c.All() {
		parts = append(parts, n.Addr()+"("+n.Role()+")")
	}
	return strings.Join(parts, " ")
}
