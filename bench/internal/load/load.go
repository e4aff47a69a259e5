// Package load runs loadgen processes (bench/cmd/loadgen) and reads their JSON lines:
// it starts as many as a connection count needs, asks them for progress, stops them
// and merges what they report, latency histograms included.
//
// A Group is used by one goroutine (the orchestrator's); each Proc has one goroutine of
// its own that reads the child's stdout into Lines.
package load

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"crease/bench/internal/procs"
	"crease/bench/internal/report"
)

// Proc is one loadgen process and its parsed stdout lines.
type Proc struct {
	*procs.Proc
	Lines chan report.Line
	Conns int
	// Started is closed at the process's first line ("started"): from then on it handles
	// SIGUSR1, whose default action would kill it.
	Started chan struct{}
}

// Group is the loadgen processes of one run.
type Group struct {
	Bin     string // the loadgen binary
	PerProc int    // connections per process at most
	CPUs    string // taskset CPU list for new processes, "" for any
	Nice    int    // niceness of new processes, 0 for the benchmark's own
	Procs   []*Proc
}

// Add starts processes for n more connections, each at most PerProc, each on its own
// slice of the source addresses so that no two processes share ephemeral ports.
func (g *Group) Add(n int, args []string, logPrefix string) error {
	for n > 0 {
		k := min(n, g.PerProc)
		n -= k
		idx := len(g.Procs)
		if err := g.AddWith(k, SourceRange(idx), fmt.Sprintf("%s-lg%d.log", logPrefix, idx), args); err != nil {
			return err
		}
	}
	return nil
}

// SourceRange is the slice of 127.0.0.2-50 of the idx-th load process: 49 source
// addresses, 12 per slot, 4 slots before they repeat.
func SourceRange(idx int) string {
	lo := 2 + (idx%4)*12
	return fmt.Sprintf("127.0.0.%d-127.0.0.%d", lo, lo+11)
}

// AddWith starts one process of k connections bound to the source addresses src, its
// stderr to logPath.
func (g *Group) AddWith(k int, src, logPath string, args []string) error {
	a := append([]string{"--conns", strconv.Itoa(k), "--src", src}, args...)
	bin, a := procs.NicedCommand(g.Nice, g.CPUs, g.Bin, a)
	cmd := exec.Command(bin, a...)
	cmd.SysProcAttr = procs.ChildAttr()
	lf, _ := os.Create(logPath)
	cmd.Stderr = lf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &Proc{Proc: &procs.Proc{Cmd: cmd, Done: make(chan struct{})}, Lines: make(chan report.Line, 16), Conns: k,
		Started: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		started := false
		for sc.Scan() {
			var ln report.Line
			if json.Unmarshal(sc.Bytes(), &ln) != nil {
				continue
			}
			if !started {
				started = true
				close(p.Started)
			}
			if ln.Event != "started" {
				p.Lines <- ln
			}
		}
		if !started {
			close(p.Started)
		}
		_ = cmd.Wait()
		if lf != nil {
			lf.Close()
		}
		close(p.Lines)
		close(p.Done)
	}()
	g.Procs = append(g.Procs, p)
	return nil
}

// Next waits for the next line of the given event, skipping others.
func (p *Proc) Next(event string, timeout time.Duration) (report.Line, error) {
	t := time.After(timeout)
	for {
		select {
		case ln, ok := <-p.Lines:
			if !ok {
				return report.Line{}, errors.New("loadgen exited")
			}
			if ln.Event == event {
				return ln, nil
			}
		case <-t:
			return report.Line{}, fmt.Errorf("no %q line from loadgen %d after %v", event, p.Cmd.Process.Pid, timeout)
		}
	}
}

// Ready waits for the ready line of every process from index from on.
func (g *Group) Ready(from int, timeout time.Duration) (report.Line, error) {
	var lines []report.Line
	for _, p := range g.Procs[from:] {
		ln, err := p.Next("ready", timeout)
		if err != nil {
			return report.Line{}, err
		}
		lines = append(lines, ln)
	}
	return Merge(lines), nil
}

// Progress asks every process for its counters (SIGUSR1) and sums them.
func (g *Group) Progress() (report.Line, error) {
	lines, err := g.ProgressLines()
	if err != nil {
		return report.Line{}, err
	}
	return Merge(lines), nil
}

// ProgressLines asks every process for its counters (SIGUSR1) and returns each line.
func (g *Group) ProgressLines() ([]report.Line, error) {
	for _, p := range g.Procs {
		select {
		case <-p.Started:
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("loadgen %d printed nothing within 10 s of its start", p.Cmd.Process.Pid)
		}
		_ = p.Cmd.Process.Signal(syscall.SIGUSR1)
	}
	var lines []report.Line
	for _, p := range g.Procs {
		ln, err := p.Next("progress", 5*time.Second)
		if err != nil {
			return nil, err
		}
		lines = append(lines, ln)
	}
	return lines, nil
}

// Finish stops every process and merges the final reports, histograms included.
func (g *Group) Finish() (report.Line, *hdrhistogram.Histogram, []report.Line, error) {
	for _, p := range g.Procs {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	}
	var lines []report.Line
	var firstErr error
	for _, p := range g.Procs {
		ln, err := p.Next("report", 20*time.Second)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			_ = p.Cmd.Process.Kill()
			continue
		}
		lines = append(lines, ln)
	}
	for _, p := range g.Procs {
		select {
		case <-p.Done:
		case <-time.After(5 * time.Second):
			_ = p.Cmd.Process.Kill()
		}
	}
	h := report.MergeHists(lines, func(ln report.Line) string { return ln.Hist })
	m := Merge(lines)
	m.Latency = report.Summarise(h)
	return m, h, lines, firstErr
}

// CPU is the processes' utime+stime so far, in seconds.
func (g *Group) CPU() float64 {
	t := 0.0
	for _, p := range g.Procs {
		c, _ := procs.Stat(p.Cmd.Process.Pid)
		t += c
	}
	return t
}

// Kill SIGKILLs every process still running.
func (g *Group) Kill() {
	for _, p := range g.Procs {
		if p.Alive() {
			_ = p.Cmd.Process.Kill()
		}
	}
}

// Merge sums the counters of several processes' lines.
func Merge(lines []report.Line) report.Line {
	var m report.Line
	m.Received = map[string]int64{}
	for _, ln := range lines {
		m.Open += ln.Open
		m.Target += ln.Target
		m.Attempted += ln.Attempted
		m.Connected += ln.Connected
		m.FailedHandshakes += ln.FailedHandshakes
		m.ConnectErrors += ln.ConnectErrors
		m.Stalled += ln.Stalled
		m.Gaps += ln.Gaps
		m.GapMissing += ln.GapMissing
		m.Dups += ln.Dups
		m.ProtocolErrors += ln.ProtocolErrors
		m.Received = report.AddCounts(m.Received, ln.Received)
		m.HandshakeStatus = report.AddCounts(m.HandshakeStatus, ln.HandshakeStatus)
		m.Resyncs = report.AddCounts(m.Resyncs, ln.Resyncs)
		m.Closes = report.AddCounts(m.Closes, ln.Closes)
		if ln.Storm != nil {
			if m.Storm == nil {
				m.Storm = &report.Storm{Handshakes: map[int64]int64{}}
			}
			s := ln.Storm
			if s.FirstCloseUs != 0 && (m.Storm.FirstCloseUs == 0 || s.FirstCloseUs < m.Storm.FirstCloseUs) {
				m.Storm.FirstCloseUs = s.FirstCloseUs
			}
			// All back means every process is back: the latest of them, or none.
			if s.AllBackUs == 0 || m.Storm.AllBackUs == -1 {
				m.Storm.AllBackUs = -1
			} else if s.AllBackUs > m.Storm.AllBackUs {
				m.Storm.AllBackUs = s.AllBackUs
			}
			m.Storm.Reconnects += s.Reconnects
			for k, v := range s.Handshakes {
				m.Storm.Handshakes[k] += v
			}
		}
	}
	return m
}
