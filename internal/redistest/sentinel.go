package redistest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelMaster is the master name the sentinels of StartSentinel monitor.
const SentinelMaster = "crease"

// Sentinel timing of StartSentinel: a primary silent for SentinelDownAfter is down for
// that sentinel; with the quorum (2 of 3) agreeing, one of them is elected and promotes
// the replica, usually within another second.
const (
	SentinelDownAfter       = time.Second
	SentinelFailoverTimeout = 2 * time.Second
	sentinelCount           = 3
	sentinelQuorum          = 2
)

// Sentinel is a primary, a replica and three sentinels monitoring them as
// SentinelMaster, owned by a test: Redis as managed Redis services run it.
type Sentinel struct {
	t testing.TB
	// Data are the two data nodes: Data[0] started as the primary, Data[1] as its
	// replica. Which is primary now is what Master says.
	Data []*Server
	// Sentinels are the sentinel processes.
	Sentinels []*Server
}

// StartSentinel runs the primary, its replica and three sentinels (quorum 2,
// SentinelDownAfter) on free loopback ports, and returns once the replica is in sync
// and every sentinel knows the replica and the other sentinels (SENTINEL CKQUORUM), so
// that a failover can happen. Everything is killed in t.Cleanup.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin, _ := binaries(t)
	s := &Sentinel{t: t}
	primary := start(t, bin, func(*Server) error { return nil })
	replica := start(t, bin, func(r *Server) error { r.replicaOf = primary.Addr(); return nil })
	s.Data = []*Server{primary, replica}
	for range sentinelCount {
		s.Sentinels = append(s.Sentinels, start(t, bin, func(x *Server) error {
			x.sentinel = true
			conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
				"sentinel down-after-milliseconds %[1]s %[4]d\n"+
				"sentinel failover-timeout %[1]s %[5]d\n"+
				"sentinel parallel-syncs %[1]s 1\n",
				SentinelMaster, primary.port, sentinelQuorum, SentinelDownAfter.Milliseconds(), SentinelFailoverTimeout.Milliseconds())
			return os.WriteFile(filepath.Join(x.dir, "sentinel.conf"), []byte(conf), 0o644)
		}))
	}
	s.WaitReady(t)
	return s
}

// Addrs are the sentinels' addresses (what --redis takes with --redis-sentinel).
func (s *Sentinel) Addrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, x := range s.Sentinels {
		out[i] = x.Addr()
	}
	return out
}

// MasterAddr is the master's address as the first answering sentinel names it
// (SENTINEL GET-MASTER-ADDR-BY-NAME).
func (s *Sentinel) MasterAddr() (string, error) {
	var last error = errNoAnswer
	for _, x := range s.Sentinels {
		out, err := x.Cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
		f := strings.Fields(out)
		if err != nil || len(f) != 2 {
			last = fmt.Errorf("sentinel %s: %v %q", x.Addr(), err, out)
			continue
		}
		return net.JoinHostPort(f[0], f[1]), nil
	}
	return "", last
}

// Master is the data node the sentinels name as master, or nil.
func (s *Sentinel) Master() *Server {
	addr, err := s.MasterAddr()
	if err != nil {
		return nil
	}
	return s.node(addr)
}

// Replica is the data node that is not the master (it may be down).
func (s *Sentinel) Replica() *Server {
	m := s.Master()
	for _, d := range s.Data {
		if d != m {
			return d
		}
	}
	return nil
}

func (s *Sentinel) node(addr string) *Server {
	for _, d := range s.Data {
		if d.Addr() == addr {
			return d
		}
	}
	return nil
}

// WaitNewMaster waits until every sentinel names a master other than old, and that node
// reports role:master: the failover is over. It returns the new master.
func (s *Sentinel) WaitNewMaster(t testing.TB, old *Server) *Server {
	t.Helper()
	var m *Server
	waitUntil(t, FailoverTimeout, "the sentinels to promote a new master instead of "+old.Addr(), func() error {
		var seen string
		for _, x := range s.Sentinels {
			out, err := x.Cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster)
			f := strings.Fields(out)
			if err != nil || len(f) != 2 {
				return fmt.Errorf("sentinel %s: %v %q", x.Addr(), err, out)
			}
			addr := net.JoinHostPort(f[0], f[1])
			if addr == old.Addr() {
				return fmt.Errorf("sentinel %s still names %s", x.Addr(), addr)
			}
			if seen != "" && seen != addr {
				return fmt.Errorf("sentinels disagree: %s and %s", seen, addr)
			}
			seen = addr
		}
		if m = s.node(seen); m == nil {
			return fmt.Errorf("sentinels name %s, not a node of this setup", seen)
		}
		if r := m.Role(); r != "master" {
			return fmt.Errorf("%s named master, reports role %q", seen, r)
		}
		return nil
	})
	return m
}

// Failover asks a sentinel for a failover now (SENTINEL FAILOVER: no agreement of the
// others needed, the primary may be alive) and waits until it is done. It returns the
// new master.
func (s *Sentinel) Failover(t testing.TB) *Server {
	t.Helper()
	old := s.Master()
	if old == nil {
		t.Fatal("redistest: Failover: the sentinels name no master")
	}
	waitUntil(t, FailoverTimeout, "a sentinel to accept SENTINEL FAILOVER", func() error {
		out, err := s.Sentinels[0].Cli("SENTINEL", "FAILOVER", SentinelMaster)
		if err != nil || out != "OK" {
			// NOGOODSLAVE while the sentinel's view of the replica is stale, INPROG ...
			return fmt.Errorf("%v %s", err, out)
		}
		return nil
	})
	return s.WaitNewMaster(t, old)
}

// WaitReady waits until the setup can fail over again: the replica is in sync with
// the master, and every sentinel reaches its quorum and knows the replica as healthy.
func (s *Sentinel) WaitReady(t testing.TB) {
	t.Helper()
	waitUntil(t, FailoverTimeout, "the Sentinel setup ready to fail over", func() error {
		m := s.Master()
		if m == nil {
			return fmt.Errorf("no master named")
		}
		r := s.Replica()
		if err := r.Replicating(); err != nil {
			return err
		}
		if info, err := r.Info("replication"); err != nil || info["master_port"] != strconv.Itoa(m.port) {
			return fmt.Errorf("replica %s follows port %s, master is %s", r.Addr(), info["master_port"], m.Addr())
		}
		for _, x := range s.Sentinels {
			out, err := x.Cli("SENTINEL", "CKQUORUM", SentinelMaster)
			if err != nil || !strings.HasPrefix(out, fmt.Sprintf("OK %d usable", sentinelCount)) {
				return fmt.Errorf("sentinel %s: %v %s", x.Addr(), err, out)
			}
			if err := sentinelKnowsReplica(x, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// sentinelKnowsReplica: SENTINEL REPLICAS lists r with flags exactly "slave" (not
// s_down, not disconnected) and its link to the master up.
func sentinelKnowsReplica(x, r *Server) error {
	out, err := x.Cli("SENTINEL", "REPLICAS", SentinelMaster)
	if err != nil {
		return fmt.Errorf("sentinel %s: SENTINEL REPLICAS: %v %s", x.Addr(), err, out)
	}
	// redis-cli prints each replica as alternating field and value lines.
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if strings.TrimSpace(lines[i]) != "name" || strings.TrimSpace(lines[i+1]) != r.Addr() {
			continue
		}
		fields := map[string]string{}
		for j := i; j+1 < len(lines); j += 2 {
			k := strings.TrimSpace(lines[j])
			if k == "name" && j != i {
				break
			}
			fields[k] = strings.TrimSpace(lines[j+1])
		}
		if fields["flags"] != "slave" || fields["master-link-status"] != "ok" {
			return fmt.Errorf("sentinel %s sees replica %s with flags %q, master link %q", x.Addr(), r.Addr(), fields["flags"], fields["master-link-status"])
		}
		return nil
	}
	return fmt.Errorf("sentinel %s does not know replica %s yet", x.Addr(), r.Addr())
}
