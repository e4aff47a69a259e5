package redistest

import (
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The user replicas authenticate as on their primary. Every data node has it (and is
// configured to use it), so that PauseReplication can shut one replica out of its
// primary by disabling it there, in standalone, Sentinel and Cluster setups alike.
const (
	replUser = "crease-repl"
	replPass = "crease-repl-secret"
)

var replicationArgs = []string{
	"--user", replUser, "on", ">" + replPass, "~*", "&*", "+@all",
	"--masteruser", replUser,
	"--masterauth", replPass,
	// A full sync starts at once (the default waits 5 s for more replicas to join it).
	"--repl-diskless-sync-delay", "0",
}

// FailoverTimeout bounds the waits of this package for a topology change: a sentinel
// or cluster election, a replica's sync.
const FailoverTimeout = 30 * time.Second

// Info returns one INFO section as a map.
func (s *Server) Info(section string) (map[string]string, error) {
	out, err := s.Cli("INFO", section)
	if err != nil {
		return nil, fmt.Errorf("INFO %s on %s: %v: %s", section, s.Addr(), err, out)
	}
	return parseInfo(out), nil
}

// parseInfo reads the "field:value" lines of INFO and CLUSTER INFO.
func parseInfo(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// Role is the node's replication role, "master" or "slave", or "" when it does not
// answer.
func (s *Server) Role() string {
	m, err := s.Info("replication")
	if err != nil {
		return ""
	}
	return m["role"]
}

// Replicating reports nil when the node is a replica whose link to its primary is up
// and not in a full sync, or says why not.
func (s *Server) Replicating() error {
	m, err := s.Info("replication")
	if err != nil {
		return err
	}
	if m["role"] != "slave" || m["master_link_status"] != "up" || m["master_sync_in_progress"] != "0" {
		return fmt.Errorf("%s: role %q, master %s:%s, link %q, sync in progress %q", s.Addr(), m["role"],
			m["master_host"], m["master_port"], m["master_link_status"], m["master_sync_in_progress"])
	}
	return nil
}

// PauseReplication shuts this replica out of its primary: the replication user is
// disabled on the primary and the replica's link killed, so its reconnects fail
// authentication while the primary goes on taking writes the replica never gets (a
// lagging replica, deterministically: no data sits in socket buffers). It returns once
// the replica reports its link down. ResumeReplication undoes it.
func (s *Server) PauseReplication(t testing.TB) {
	t.Helper()
	m, err := s.Info("replication")
	if err != nil || m["role"] != "slave" {
		t.Fatalf("redistest: PauseReplication of %s: not a replica (%v, role %q)", s.Addr(), err, m["role"])
	}
	port, err := strconv.Atoi(m["master_port"])
	if err != nil {
		t.Fatalf("redistest: PauseReplication of %s: master_port %q", s.Addr(), m["master_port"])
	}
	if out, err := cli(port, "ACL", "SETUSER", replUser, "off"); err != nil || out != "OK" {
		t.Fatalf("redistest: ACL SETUSER %s off on 127.0.0.1:%d: %v %s", replUser, port, err, out)
	}
	if out, err := cli(port, "CLIENT", "KILL", "USER", replUser); err != nil {
		t.Fatalf("redistest: CLIENT KILL USER on 127.0.0.1:%d: %v %s", port, err, out)
	}
	s.mu.Lock()
	s.pausedOn = port
	s.mu.Unlock()
	waitUntil(t, FailoverTimeout, "replica "+s.Addr()+" to report its link down", func() error {
		m, err := s.Info("replication")
		if err != nil {
			return err
		}
		if m["master_link_status"] != "down" {
			return fmt.Errorf("master_link_status %q", m["master_link_status"])
		}
		return nil
	})
}

// ResumeReplication enables the replication user again on the primary that
// PauseReplication shut this replica out of (if it still runs); the replica reconnects
// by itself within a second.
func (s *Server) ResumeReplication(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	port := s.pausedOn
	s.pausedOn = 0
	s.mu.Unlock()
	if port == 0 {
		return
	}
	if out, err := cli(port, "ACL", "SETUSER", replUser, "on"); err != nil && ping("127.0.0.1:"+strconv.Itoa(port)) == nil {
		t.Fatalf("redistest: ACL SETUSER %s on, on 127.0.0.1:%d: %v %s", replUser, port, err, out)
	}
}

// Freeze stops the process with SIGSTOP: it holds its connections and answers nothing
// (a hung host) until Thaw.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen process with SIGCONT.
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// RestartAsReplicaOf starts the server again, without its data, as a replica of
// primary (a failed primary coming back into a Sentinel setup).
func (s *Server) RestartAsReplicaOf(primary *Server) {
	s.t.Helper()
	s.mu.Lock()
	s.replicaOf = primary.Addr()
	s.mu.Unlock()
	s.Restart()
}

// Session runs the lines through one redis-cli connection (its standard input), for
// commands that depend on the connection's state (READONLY then GET on a replica), and
// returns the replies, one a line.
func (s *Server) Session(lines ...string) (string, error) {
	path, err := exec.LookPath("redis-cli")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(path, "-h", "127.0.0.1", "-p", strconv.Itoa(s.port))
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Alive reports whether the server answers PING.
func (s *Server) Alive() bool { return ping(s.Addr()) == nil }

// waitUntil polls cond every 20 ms until it returns nil, and fails the test with its
// last error after within.
func waitUntil(t testing.TB, within time.Duration, what string, cond func() error) {
	t.Helper()
	if err := pollUntil(within, cond); err != nil {
		t.Fatalf("redistest: timed out after %v waiting for %s: %v", within, what, err)
	}
}

func pollUntil(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var errNoAnswer = errors.New("no node answered")
