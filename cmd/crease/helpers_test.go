package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"crease/ingest"
	"crease/server/servertest"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

// TestMain removes the binary built for the subprocess tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// creaseBin builds the crease binary once per test run (go build to a temp dir).
func creaseBin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "crease-bin-")
		if buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "crease")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// child is a process a test started: its output and its exit. Cleanup kills it if it
// is still running and, when the test failed, logs the end of its output.
type child struct {
	cmd     *exec.Cmd
	out     *servertest.LockedBuffer
	exited  chan struct{}
	exitErr error
}

// startChild runs argv (argv[0] the program) with the test's environment.
func startChild(t testing.TB, argv ...string) *child {
	t.Helper()
	return startChildWith(t, nil, argv...)
}

// startChildWith is startChild with setup, if not nil, adjusting the command before it
// starts (more environment, inherited descriptors).
func startChildWith(t testing.TB, setup func(*exec.Cmd), argv ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(argv[0], argv[1:]...), out: &servertest.LockedBuffer{}, exited: make(chan struct{})}
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.Env = os.Environ()
	if setup != nil {
		setup(c.cmd)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exitErr = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			out := c.out.String()
			if len(out) > 4000 {
				out = "..." + out[len(out)-4000:]
			}
			t.Logf("output of %.100s:\n%s", strings.Join(argv, " "), out)
		}
	})
	return c
}

// wait waits up to within for the process to exit and returns its exit error.
func (c *child) wait(t testing.TB, within time.Duration) error {
	t.Helper()
	select {
	case <-c.exited:
		return c.exitErr
	case <-time.After(within):
		t.Fatalf("%s did not exit within %v", c.cmd.Path, within)
		return nil
	}
}

// proc is a crease gateway child process and its two listeners.
type proc struct {
	*child
	ws, http string
}

// startCrease runs `[prefix...] crease args... --ws-addr --http-addr` and waits until its
// HTTP listener answers /healthz.
func startCrease(t *testing.T, prefix []string, args ...string) *proc {
	t.Helper()
	p := &proc{ws: servertest.FreeAddr(t), http: servertest.FreeAddr(t)}
	argv := append(append(append([]string{}, prefix...), creaseBin(t)), args...)
	p.child = startChild(t, append(argv, "--ws-addr", p.ws, "--http-addr", p.http)...)
	servertest.Eventually(t, 15*time.Second, func() error {
		select {
		case <-p.exited:
			t.Fatalf("crease exited at start: %v\n%s", p.exitErr, p.out.String())
		default:
		}
		resp, err := http.Get("http://" + p.http + "/healthz")
		if err != nil {
			return fmt.Errorf("crease not answering: %w", err)
		}
		return resp.Body.Close()
	})
	return p
}

func (p *proc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// waitExit waits for the process to exit, fails t unless it exited cleanly, and
// returns how long that took.
func (p *proc) waitExit(t testing.TB, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.wait(t, within); err != nil {
		t.Errorf("crease exited with %v", err)
	}
	return time.Since(start)
}

// cpuTicks is utime + stime of pid in clock ticks (1/100 s).
func cpuTicks(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return u + k
}

func openFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// ---- a raw WebSocket client that checks every frame ----

type (
	wsConn = servertest.WSConn
	frame  = servertest.Frame
)

// connectMany opens n clients on path, each past hello (and subscribed, if sub).
func connectMany(t testing.TB, addr, path string, n int, sub bool) []*wsConn {
	t.Helper()
	var out []*wsConn
	for i := range n {
		c, resp, err := servertest.DialWS(addr, path, nil, "")
		if err != nil || c == nil {
			t.Fatalf("client %d: %v %v", i, resp, err)
		}
		t.Cleanup(func() { c.Close() })
		want := []string{"hello"}
		if sub {
			want = append(want, "subscribed")
		}
		for _, typ := range want {
			f, err := c.Next(time.Now().Add(10 * time.Second))
			if err != nil || f.Type != typ {
				t.Fatalf("client %d: %s %v, want %s", i, f.Raw, err, typ)
			}
		}
		out = append(out, c)
	}
	return out
}

// whileProgressing waits until cond returns nil, for as long as progress keeps moving:
// it fails t, with cond's last error, once progress has stood still for stall. It is
// for waits whose length is CPU-bound work on a machine shared with other tests, which
// no fixed deadline can guess, while a wait that stopped going anywhere still fails.
func whileProgressing[N comparable](t testing.TB, stall time.Duration, progress func() N, cond func() error) {
	t.Helper()
	for {
		at, done := progress(), false
		servertest.Eventually(t, stall, func() error {
			err := cond()
			switch {
			case err == nil:
				done = true
				return nil
			case progress() != at:
				return nil
			}
			return fmt.Errorf("no progress for %v: %w", stall, err)
		})
		if done {
			return
		}
	}
}

// apiRequest sends an HTTP request with the API key key ("" for none) and returns the
// status and the body.
func apiRequest(t testing.TB, method, url, body, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// matchFile copies the real match id to a file of the test's (what `crease ingest
// --match` reads) and returns its path and the match read from it.
func matchFile(t testing.TB, id string) (string, *ingest.Match) {
	t.Helper()
	data := servertest.MatchFile(t, id)
	path := filepath.Join(t.TempDir(), id+".json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := ingest.ReadMatch(id+".json", data)
	if err != nil {
		t.Fatal(err)
	}
	return path, m
}
