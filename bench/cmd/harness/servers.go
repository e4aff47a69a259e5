package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"crease/bench/internal/procs"
	"crease/bench/internal/repo"
)

type serverSpec struct {
	name   string
	bin    string
	args   func(ws, http, redis string) []string
	proto  string // loadgen --proto
	target string // publisher --target
	fanout bool   // false: only idle and storm make sense (bare)
	lag    bool   // serves crease_loop_lag_seconds on its HTTP address
	about  string
	skip   string // why it is skipped, if it is
}

// build compiles the load tools (required) and the baselines (each optional).
func (h *harness) build() error {
	for _, name := range []string{"loadgen", "publisher"} {
		if out, err := repo.GoBuild(h.benchDir, h.bin(name), "./cmd/"+name); err != nil {
			return fmt.Errorf("build %s: %v\n%s", name, err, out)
		}
	}
	return nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

func (h *harness) defineServers(list, creaseBin string, loops int, creasePub string) {
	want := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		want[strings.TrimSpace(s)] = true
	}
	plain := func(extra ...string) func(ws, http, redis string) []string {
		return func(ws, _, redis string) []string {
			return append([]string{"--addr", ws, "--redis", redis}, extra...)
		}
	}
	all := []*serverSpec{
		{name: "crease", proto: "crease", target: creasePub, fanout: true, lag: true, about: "the gateway under test (`crease serve --loops " + strconv.Itoa(loops) + " --redis`)",
			args: func(ws, http, redis string) []string {
				// Admission control is sized for the load generator's connect rate (the
				// default 5,000/s would refuse part of a 15,000-connection ramp), and the
				// drain window is short so the storm measures the restart, not the drain.
				return []string{"serve", "--ws-addr", ws, "--http-addr", http, "--loops", strconv.Itoa(loops), "--redis", redis,
					"--handshake-rate", "20000", "--handshake-burst", "20000", "--drain-window", "1s", "--log-level", "warn"}
			}},
		{name: "naive", bin: "naive", proto: "crease", target: "crease", fanout: true, args: plain(),
			about: "gorilla/websocket, reader + writer goroutine per connection, channel of 64, one Redis subscription per match"},
		{name: "centrifuge", bin: "centrifuge", proto: "centrifuge", target: "centrifuge", fanout: true, args: plain(),
			about: "centrifugal/centrifuge v0.40.1, Redis broker, JSON protocol, server-side subscription"},
		{name: "floor1", bin: "floor", proto: "crease", target: "crease", fanout: true, args: plain("--frames-per-write", "1"),
			about: "syscall floor: write(2) of each pre-encoded frame to every socket, one thread per core"},
		{name: "floor10", bin: "floor", proto: "crease", target: "crease", fanout: true, args: plain("--frames-per-write", "10"),
			about: "syscall floor, up to 10 waiting frames coalesced per write"},
		{name: "bare", bin: "bare", proto: "crease", target: "crease", fanout: false, args: plain(),
			about: "memory floor: gnet/v2 + gobwas/ws, upgrade + hello only (idle and storm scenarios)"},
	}
	built := map[string]string{}
	for _, s := range all {
		if !want[s.name] {
			continue
		}
		h.servers = append(h.servers, s)
		if s.name == "crease" {
			if creaseBin == "" {
				creaseBin = h.bin("crease")
				if out, err := repo.GoBuild(h.root, creaseBin, "./cmd/crease"); err != nil {
					s.skip = "cannot build ./cmd/crease: " + firstLine(out)
				}
			}
			s.bin = creaseBin
			if s.skip == "" {
				if _, err := os.Stat(creaseBin); err != nil {
					s.skip = "no crease binary: " + err.Error()
				}
			}
		} else {
			if _, ok := built[s.bin]; !ok {
				out, err := repo.GoBuild(h.benchDir, h.bin(s.bin), "./cmd/"+s.bin)
				built[s.bin] = ""
				if err != nil {
					built[s.bin] = "cannot build: " + firstLine(out)
				}
			}
			s.skip = built[s.bin]
			s.bin = h.bin(s.bin)
		}
		if s.skip != "" {
			h.notes = append(h.notes, fmt.Sprintf("**%s skipped**: %s", s.name, s.skip))
			fmt.Fprintf(os.Stderr, "harness: skipping %s: %s\n", s.name, s.skip)
		}
	}
}

func (h *harness) startRedis() (func(), error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return func() {}, err
	}
	port := procs.FreePort()
	h.redisAddr = "127.0.0.1:" + strconv.Itoa(port)
	p, err := procs.Start("redis-server", []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"},
		filepath.Join(h.logDir, "redis.log"))
	if err != nil {
		return func() {}, err
	}
	if err := procs.WaitListen(h.redisAddr, p, 10*time.Second); err != nil {
		p.Stop(time.Second)
		return func() {}, err
	}
	h.redisPid = p.Pid()
	stopped := false
	return func() {
		if !stopped {
			stopped = true
			p.Stop(3 * time.Second)
		}
	}, nil
}

type server struct {
	*procs.Proc
	spec      *serverSpec
	args      []string
	log       string
	wsAddr    string
	httpAddr  string
	cpus      string     // taskset CPU list, "" for any
	sockets   []*os.File // listening sockets every process of sv inherits (socket activation)
	restarted int
}

func (h *harness) startServer(s *serverSpec, tag, cpus string, socket bool, extra ...string) (*server, error) {
	ws := "127.0.0.1:" + strconv.Itoa(procs.FreePort())
	hp := "127.0.0.1:" + strconv.Itoa(procs.FreePort())
	sv := &server{spec: s, args: append(s.args(ws, hp, h.redisAddr), extra...), log: filepath.Join(h.logDir, s.name+"-"+tag), wsAddr: ws, httpAddr: hp, cpus: cpus}
	if socket {
		// The harness holds the ports, as systemd holds a .socket unit's: each process
		// gets them as descriptors 3 (ws) and 4 (http).
		for _, addr := range []string{ws, hp} {
			ln, err := net.Listen("tcp4", addr)
			if err != nil {
				sv.closeSockets()
				return sv, err
			}
			f, err := ln.(*net.TCPListener).File()
			ln.Close()
			if err != nil {
				sv.closeSockets()
				return sv, err
			}
			sv.sockets = append(sv.sockets, f)
		}
	}
	return sv, sv.launch()
}

func (sv *server) closeSockets() {
	for _, f := range sv.sockets {
		f.Close()
	}
	sv.sockets = nil
}

// launchSuccessor starts a second process of sv's command on the same ports (it must
// bind them with SO_REUSEPORT) and waits until the kernel lists both listeners.
func (sv *server) launchSuccessor() (*procs.Proc, error) {
	bin, args := procs.Command(sv.cpus, sv.spec.bin, sv.args)
	p, err := procs.Start(bin, args, fmt.Sprintf("%s-%d.log", sv.log, sv.restarted+1))
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(sv.wsAddr)
	end := time.Now().Add(15 * time.Second)
	for procs.Listeners(port) < 2 {
		if !p.Alive() || time.Now().After(end) {
			p.Stop(time.Second)
			return nil, fmt.Errorf("successor did not bind %s (log %s-%d.log)", sv.wsAddr, sv.log, sv.restarted+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Bound is not yet accepting: give its event loops and bus the moment they take.
	time.Sleep(500 * time.Millisecond)
	return p, nil
}

func (sv *server) launch() error {
	bin, args := procs.Command(sv.cpus, sv.spec.bin, sv.args)
	var env []string
	if len(sv.sockets) > 0 {
		// LISTEN_PID must be the server's pid: the shell's, which exec keeps.
		bin, args = "/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, bin}, args...)
		env = []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=ws:http"}
	}
	p, err := procs.StartWith(bin, args, fmt.Sprintf("%s-%d.log", sv.log, sv.restarted), sv.sockets, env)
	if err != nil {
		return err
	}
	sv.Proc = p
	wait := func() error { return procs.WaitListen(sv.wsAddr, p, 15*time.Second) }
	if len(sv.sockets) > 0 {
		// The held socket accepts before any process does: wait for the server itself.
		wait = func() error { return procs.WaitHTTP("http://"+sv.httpAddr+"/healthz", p, 15*time.Second) }
	}
	if err := wait(); err != nil {
		p.Stop(time.Second)
		return fmt.Errorf("%s: %v (log %s-%d.log)", sv.spec.name, err, sv.log, sv.restarted)
	}
	return nil
}

func (sv *server) pid() int { return sv.Pid() }

func (h *harness) loadArgs(s *serverSpec, sv *server, sc scenario, matches int) []string {
	a := []string{"--url", "ws://" + sv.wsAddr + "/ws", "--proto", s.proto, "--match-count", strconv.Itoa(max(matches, 1))}
	if sc.hot > 0 {
		a = append(a, "--hot-frac", fmt.Sprint(sc.hot))
	}
	if sc.stall > 0 {
		a = append(a, "--stall-frac", fmt.Sprint(sc.stall))
	}
	if sc.reconnect != "" {
		a = append(a, "--reconnect", sc.reconnect)
		if sc.spread > 0 {
			a = append(a, "--spread", sc.spread.String())
		}
	}
	return a
}
