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

// Cluster is a Redis Cluster of ClusterSize masters and no replicas, owned by a test.
type Cluster struct {
	Nodes []*Server
}

// Addrs returns the masters' addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// NodeForKey returns the master that owns key's slot (CLUSTER KEYSLOT; a channel
// name hashes like a key), or nil.
func (c *Cluster) NodeForKey(key string) *Server {
	out, err := c.Nodes[0].Cli("CLUSTER", "KEYSLOT", key)
	if err != nil {
		return nil
	}
	slot, err := strconv.Atoi(out)
	if err != nil {
		return nil
	}
	return c.nodeForSlot(slot)
}

// StartCluster runs ClusterSize cluster-enabled masters on free loopback ports, joins
// them with `redis-cli --cluster create`, and waits until every node reports
// cluster_state:ok. The nodes are killed in t.Cleanup.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, cliBin := binaries(t)
	c := &Cluster{}
	for i := 0; i < ClusterSize; i++ {
		c.Nodes = append(c.Nodes, start(t, bin, func(int) ([]string, error) {
			// The cluster bus needs its own free port; port+10000 may be out of range.
			busPort, err := freePort()
			if err != nil {
				return nil, err
			}
			return []string{
				"--cluster-enabled", "yes",
				"--cluster-port", strconv.Itoa(busPort),
				"--cluster-node-timeout", "2000",
				"--cluster-config-file", "nodes.conf",
			}, nil
		}))
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cliBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(StartTimeout)
	for _, n := range c.Nodes {
		for {
			out, err := n.Cli("CLUSTER", "INFO")
			if err == nil && strings.Contains(out, "cluster_state:ok") && strings.Contains(out, "cluster_known_nodes:"+strconv.Itoa(ClusterSize)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: node %s not ok within %v: %v\n%s", n.Addr(), StartTimeout, err, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c
}

// nodeForSlot asks CLUSTER SLOTS which master's port serves slot.
func (c *Cluster) nodeForSlot(slot int) *Server {
	out, err := c.Nodes[0].Cli("CLUSTER", "SLOTS")
	if err != nil {
		return nil
	}
	// redis-cli prints CLUSTER SLOTS flat: start, end, ip, port, id, (then more nodes).
	lines := strings.Fields(out)
	for i := 0; i+3 < len(lines); i++ {
		lo, err1 := strconv.Atoi(lines[i])
		hi, err2 := strconv.Atoi(lines[i+1])
		if err1 != nil || err2 != nil || lines[i+2] != "127.0.0.1" {
			continue
		}
		port, err := strconv.Atoi(lines[i+3])
		if err != nil {
			continue
		}
		if slot >= lo && slot <= hi {
			for _, n := range c.Nodes {
				if n.port == port {
					return n
				}
			}
		}
	}
	return nil
}

// String lists the nodes, for failure messages.
func (c *Cluster) String() string { return fmt.Sprint(c.Addrs()) }
