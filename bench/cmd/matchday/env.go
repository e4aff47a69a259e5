package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"crease/bench/internal/load"
	"crease/bench/internal/procs"
	"crease/bench/internal/repo"
)

// env is what every run shares: the binaries, the log directory, and every process
// started, so that all of them can be stopped whatever happens.
type env struct {
	root, benchDir, logDir string
	bins                   map[string]string // loadgen, crease, naive, centrifuge, publisher

	mu     sync.Mutex
	procs  []*procs.Proc
	groups []*load.Group
}

// prepare builds what the runs need: loadgen always, the gateway under test, and the
// relay for centrifuge.
func prepare(root, creaseBin string, o options) (*env, error) {
	e := &env{root: root, benchDir: filepath.Join(root, "bench"), bins: map[string]string{}}
	binDir := filepath.Join(e.benchDir, "bin")
	e.logDir = filepath.Join(binDir, "logs", "matchday-"+time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(e.logDir, 0o755); err != nil {
		return nil, err
	}
	want := []string{"loadgen"}
	switch o.server {
	case "naive":
		want = append(want, "naive")
	case "centrifuge":
		want = append(want, "centrifuge", "publisher")
	}
	for _, name := range want {
		out := filepath.Join(binDir, name)
		if b, err := repo.GoBuild(e.benchDir, out, "./cmd/"+name); err != nil {
			return nil, fmt.Errorf("build %s: %v\n%s", name, err, b)
		}
		e.bins[name] = out
	}
	// crease also replays the match (crease ingest), whatever the gateway under test.
	if creaseBin == "" {
		creaseBin = filepath.Join(binDir, "crease")
		if b, err := repo.GoBuild(root, creaseBin, "./cmd/crease"); err != nil {
			return nil, fmt.Errorf("build crease: %v\n%s", err, b)
		}
	}
	if _, err := os.Stat(creaseBin); err != nil {
		return nil, fmt.Errorf("crease binary: %v", err)
	}
	e.bins["crease"] = creaseBin
	for _, tool := range []string{"redis-server"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found (scripts/ensure-deps.sh installs it)", tool)
		}
	}
	if contains(o.variants, "haproxy") {
		if _, err := exec.LookPath("haproxy"); err != nil {
			return nil, fmt.Errorf("haproxy not found (scripts/ensure-deps.sh installs it)")
		}
	}
	return e, nil
}

// start runs a child and remembers it; log is a file name under the log directory.
func (e *env) start(bin string, args []string, log string) (*procs.Proc, error) {
	p, err := procs.Start(bin, args, filepath.Join(e.logDir, log))
	if err != nil {
		return nil, fmt.Errorf("start %s: %v", filepath.Base(bin), err)
	}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

// loadGroup returns a new loadgen group whose processes are stopped with the others.
func (e *env) loadGroup(perProc, nice int) *load.Group {
	g := &load.Group{Bin: e.bins["loadgen"], PerProc: perProc, Nice: nice}
	e.mu.Lock()
	e.groups = append(e.groups, g)
	e.mu.Unlock()
	return g
}

// killAll SIGKILLs every child still running and waits for each to be reaped. It is
// the last resort (failure, signal) and the final sweep after a run's orderly stop.
func (e *env) killAll() {
	e.mu.Lock()
	ps, gs := e.procs, e.groups
	e.procs, e.groups = nil, nil
	e.mu.Unlock()
	for _, g := range gs {
		g.Kill()
		for _, p := range g.Procs {
			waitDone(p.Proc, 5*time.Second)
		}
	}
	for _, p := range ps {
		if p.Alive() {
			_ = p.Cmd.Process.Signal(syscall.SIGKILL)
		}
		waitDone(p, 5*time.Second)
	}
}

func waitDone(p *procs.Proc, d time.Duration) {
	select {
	case <-p.Done:
	case <-time.After(d):
		fmt.Fprintf(os.Stderr, "matchday: process %d not reaped after %v\n", p.Pid(), d)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}
