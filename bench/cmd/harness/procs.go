package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"crease/bench/internal/report"
)

func freePort() int {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListen(addr string, cmd *exec.Cmd, done <-chan struct{}, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		select {
		case <-done:
			return fmt.Errorf("exited before listening (%v)", cmd.ProcessState)
		default:
		}
		c, err := net.DialTimeout("tcp4", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(30 * time.Millisecond)
	}
	return fmt.Errorf("not listening on %s after %v", addr, timeout)
}

// proc is a started child with a channel closed when it exits.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func start(name string, args []string, logPath string) (*proc, *os.File, error) {
	cmd := exec.Command(name, args...)
	var logf *os.File
	if logPath != "" {
		_ = os.MkdirAll(filepath.Dir(logPath), 0o755)
		f, err := os.Create(logPath)
		if err == nil {
			logf = f
			cmd.Stderr = f
			cmd.Stdout = f
		}
	}
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		if logf != nil {
			logf.Close()
		}
		close(p.done)
	}()
	return p, logf, nil
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs.
func (p *proc) stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// procStat reads CPU seconds (utime+stime) and RSS in bytes of pid from /proc.
func procStat(pid int) (cpu float64, rss int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+2:])
			// Fields after the name start at field 3 (state): utime is 14, stime 15.
			if len(f) > 13 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				cpu = (ut + st) / 100 // USER_HZ is 100 on Linux
			}
		}
	}
	b, err = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err == nil {
		for _, ln := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(ln, "VmRSS:") {
				f := strings.Fields(ln)
				if len(f) >= 2 {
					kb, _ := strconv.ParseInt(f[1], 10, 64)
					rss = kb * 1024
				}
			}
		}
	}
	return cpu, rss
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, ln := range strings.Split(string(b), "\n") {
		if f := strings.Fields(ln); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// lgProc is one loadgen process and its parsed stdout lines.
type lgProc struct {
	*proc
	lines chan report.Line
	conns int
}

type loadgens struct {
	procs []*lgProc
	cpus  string // taskset CPU list for new processes, "" for any
}

// add starts processes for n more connections, each at most perProc, each on its own
// slice of the source addresses so that no two processes share ephemeral ports.
func (g *loadgens) add(h *harness, n int, args []string, logPrefix string) error {
	for n > 0 {
		k := min(n, h.perProc)
		n -= k
		idx := len(g.procs)
		// 49 source addresses, 12 per process slot, 4 slots before they repeat.
		lo := 2 + (idx%4)*12
		src := fmt.Sprintf("127.0.0.%d-127.0.0.%d", lo, lo+11)
		a := append([]string{"--conns", strconv.Itoa(k), "--src", src}, args...)
		bin, a := command(g.cpus, h.bin("loadgen"), a)
		cmd := exec.Command(bin, a...)
		lf, _ := os.Create(fmt.Sprintf("%s-lg%d.log", logPrefix, idx))
		cmd.Stderr = lf
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		p := &lgProc{proc: &proc{cmd: cmd, done: make(chan struct{})}, lines: make(chan report.Line, 16), conns: k}
		go func() {
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 1<<20), 16<<20)
			for sc.Scan() {
				var ln report.Line
				if json.Unmarshal(sc.Bytes(), &ln) == nil {
					p.lines <- ln
				}
			}
			_ = cmd.Wait()
			if lf != nil {
				lf.Close()
			}
			close(p.lines)
			close(p.done)
		}()
		g.procs = append(g.procs, p)
	}
	return nil
}

func (p *lgProc) next(event string, timeout time.Duration) (report.Line, error) {
	t := time.After(timeout)
	for {
		select {
		case ln, ok := <-p.lines:
			if !ok {
				return report.Line{}, errors.New("loadgen exited")
			}
			if ln.Event == event {
				return ln, nil
			}
		case <-t:
			return report.Line{}, fmt.Errorf("no %q line from loadgen %d after %v", event, p.cmd.Process.Pid, timeout)
		}
	}
}

// ready waits for the ready line of every process not yet ready.
func (g *loadgens) ready(from int, timeout time.Duration) (report.Line, error) {
	var lines []report.Line
	for _, p := range g.procs[from:] {
		ln, err := p.next("ready", timeout)
		if err != nil {
			return report.Line{}, err
		}
		lines = append(lines, ln)
	}
	return merge(lines, false), nil
}

// progress asks every process for its counters (SIGUSR1) and sums them.
func (g *loadgens) progress() (report.Line, error) {
	for _, p := range g.procs {
		_ = p.cmd.Process.Signal(syscall.SIGUSR1)
	}
	var lines []report.Line
	for _, p := range g.procs {
		ln, err := p.next("progress", 5*time.Second)
		if err != nil {
			return report.Line{}, err
		}
		lines = append(lines, ln)
	}
	return merge(lines, false), nil
}

// finish stops every process and merges the final reports, histograms included.
func (g *loadgens) finish() (report.Line, *hdrhistogram.Histogram, []report.Line, error) {
	for _, p := range g.procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	var lines []report.Line
	var firstErr error
	for _, p := range g.procs {
		ln, err := p.next("report", 20*time.Second)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			_ = p.cmd.Process.Kill()
			continue
		}
		lines = append(lines, ln)
	}
	for _, p := range g.procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
		}
	}
	h := report.NewHist()
	for _, ln := range lines {
		if ln.Hist == "" {
			continue
		}
		if x, err := report.DecodeHist(ln.Hist); err == nil {
			h.Merge(x)
		}
	}
	m := merge(lines, true)
	m.Latency = report.Summarise(h)
	return m, h, lines, firstErr
}

func (g *loadgens) cpu() float64 {
	t := 0.0
	for _, p := range g.procs {
		c, _ := procStat(p.cmd.Process.Pid)
		t += c
	}
	return t
}

func (g *loadgens) kill() {
	for _, p := range g.procs {
		if p.alive() {
			_ = p.cmd.Process.Kill()
		}
	}
}

func merge(lines []report.Line, final bool) report.Line {
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
		m.Received = addMap(m.Received, ln.Received)
		m.HandshakeStatus = addMap(m.HandshakeStatus, ln.HandshakeStatus)
		m.Resyncs = addMap(m.Resyncs, ln.Resyncs)
		m.Closes = addMap(m.Closes, ln.Closes)
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
	_ = final
	return m
}

func addMap(dst, src map[string]int64) map[string]int64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]int64{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

// listeners counts the TCP sockets listening on port (decimal), from /proc/net/tcp and
// tcp6.
func listeners(port string) int {
	want, err := strconv.Atoi(port)
	if err != nil {
		return 0
	}
	hex := fmt.Sprintf(":%04X", want)
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			// sl local_address rem_address st ...: 0A is LISTEN.
			if len(fs) > 3 && strings.HasSuffix(fs[1], hex) && fs[3] == "0A" {
				n++
			}
		}
	}
	return n
}

// runDelay sums the time pid's threads spent runnable but waiting for a CPU
// (/proc/PID/task/*/schedstat, second field, ns), in seconds. Threads that exited are
// not counted, which only makes it an underestimate.
func runDelay(pid int) float64 {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var ns float64
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			v, _ := strconv.ParseFloat(f[1], 64)
			ns += v
		}
	}
	return ns / 1e9
}
