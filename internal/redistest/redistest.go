package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"crease/internal/testenv"
)

// StartTimeout bounds how long a server may take to answer PING.
const StartTimeout = 10 * time.Second

// startAttempts is how many fresh ports are tried when a server fails to start (a
// parallel test binary may have taken the port between release and bind).
const startAttempts = 5

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	args []string // extra arguments (cluster mode, sentinel directives)
	// sentinel: a Sentinel process (redis-server sentinel.conf --sentinel), not a data node.
	sentinel bool
	// replicaOf is the primary's address given at launch ("" for none).
	replicaOf string
	// pausedOn is the port of the primary on which PauseReplication disabled this
	// replica's user (0 when not paused).
	pausedOn int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Addr is the server's address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

func binaries(t testing.TB) (server, cli string) {
	t.Helper()
	const install = "apt-get install redis-server redis-tools (make test does, via scripts/ensure-deps.sh)"
	return testenv.LookPath(t, "redis-server", install), testenv.LookPath(t, "redis-cli", install)
}

// freePort returns a port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start runs a standalone redis-server on a free loopback port and waits until it
// answers PING. The server is killed in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, _ := binaries(t)
	return start(t, bin, func(*Server) error { return nil })
}

// start tries fresh ports until a server comes up. setup configures the server for
// its port before the launch (arguments, files in its directory; the cluster bus port
// must be free too).
func start(t testing.TB, bin string, setup func(s *Server) error) *Server {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: no free port: %v", err)
		}
		s := &Server{t: t, bin: bin, port: port, dir: t.TempDir()}
		if lastErr = setup(s); lastErr != nil {
			continue
		}
		if lastErr = s.launch(); lastErr == nil {
			t.Cleanup(s.stop)
			return s
		}
	}
	t.Fatalf("redistest: redis-server did not start after %d attempts: %v", startAttempts, lastErr)
	return nil
}

func (s *Server) launch() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--protected-mode", "no",
	}
	if s.sentinel {
		// The sentinel rewrites its file with what it learns; it must be writable.
		args = append([]string{filepath.Join(s.dir, "sentinel.conf"), "--sentinel"}, args...)
	} else {
		// A config file, even empty, lets CONFIG REWRITE (sent by sentinels with every
		// REPLICAOF) succeed.
		conf := filepath.Join(s.dir, "redis.conf")
		if err := os.WriteFile(conf, nil, 0o644); err != nil {
			return err
		}
		args = append([]string{conf}, args...)
		args = append(args, "--save", "", "--appendonly", "no")
		args = append(args, replicationArgs...)
		if s.replicaOf != "" {
			host, port, _ := strings.Cut(s.replicaOf, ":")
			args = append(args, "--replicaof", host, port)
		}
	}
	args = append(args, s.args...)
	logPath := filepath.Join(s.dir, "redis.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	deadline := time.Now().Add(StartTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited: %s", s.port, tail(logPath))
		default:
		}
		if ping(s.Addr()) == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("redis-server on port %d did not answer PING within %v: %s", s.port, StartTimeout, tail(logPath))
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// ping sends one inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (s *Server) stop() { s.kill() }

// Kill ends the server with SIGKILL (no shutdown, no goodbye to clients) and waits
// until the process is gone.
func (s *Server) Kill() { s.kill() }

// Restart starts the server again on the same port (killing it first if it runs), with
// the arguments it was started with: a replica is a replica of the same address again
// (RestartAsReplicaOf names another). The data is gone: nothing is persisted; a cluster
// node keeps its nodes.conf and rejoins.
func (s *Server) Restart() {
	s.t.Helper()
	s.kill()
	var err error
	// The port was ours a moment ago; a few retries cover a slow release.
	for i := 0; i < startAttempts; i++ {
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart on port %d: %v", s.port, err)
}

// Cli runs redis-cli against the server with args and returns its trimmed output.
func (s *Server) Cli(args ...string) (string, error) {
	return cli(s.port, args...)
}

// PubSub lists the server's PUBSUB sub (CHANNELS, SHARDCHANNELS), one channel a
// line of redis-cli's output; an error of redis-cli fails t.
func (s *Server) PubSub(t testing.TB, sub string) []string {
	t.Helper()
	out, err := s.Cli("PUBSUB", sub)
	if err != nil {
		t.Fatalf("PUBSUB %s: %v: %s", sub, err, out)
	}
	var chs []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			chs = append(chs, l)
		}
	}
	return chs
}

func cli(port int, args ...string) (string, error) {
	path, err := exec.LookPath("redis-cli")
	if err != nil {
		return "", err
	}
	full := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(port)}, args...)
	out, err := exec.Command(path, full...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
