// Package procs starts and stops the benchmarks' child processes (servers, Redis, load
// generators) and reads what /proc says about them: CPU, memory, run-queue wait and
// listening sockets. Everything here is Linux-only, like the benchmarks.
//
// A Proc is safe to use from several goroutines: Done is closed by the goroutine that
// waits for the child, everything else only signals it.
package procs

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a started child with a channel closed when it exits.
type Proc struct {
	Cmd  *exec.Cmd
	Done chan struct{}
}

// Start runs name with args, stdout and stderr to logPath (if not empty).
func Start(name string, args []string, logPath string) (*Proc, error) {
	return StartWith(name, args, logPath, nil, nil)
}

// StartWith is Start with descriptors passed to the child as 3, 4, ... and variables
// added to its environment.
func StartWith(name string, args []string, logPath string, files []*os.File, env []string) (*Proc, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = ChildAttr()
	cmd.ExtraFiles = files
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
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
		return nil, err
	}
	p := &Proc{Cmd: cmd, Done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		if logf != nil {
			logf.Close()
		}
		close(p.Done)
	}()
	return p, nil
}

// ChildAttr makes a child die with the benchmark (SIGKILL when its parent goes), so
// that a benchmark killed in the middle leaves no server or Redis behind.
func ChildAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// Pid is the child's process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Stop sends SIGTERM, waits up to grace, then SIGKILLs. A nil Proc is a no-op.
func (p *Proc) Stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.Done
	}
}

// Alive reports whether the child has not exited yet.
func (p *Proc) Alive() bool {
	select {
	case <-p.Done:
		return false
	default:
		return true
	}
}

// FreePort returns a TCP port free on 127.0.0.1 right now (0 if none).
func FreePort() int {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitHTTP waits until url answers (any status), p exits, or timeout passes: for a
// server whose socket is held by someone else, listening proves nothing.
func WaitHTTP(url string, p *Proc, timeout time.Duration) error {
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	return waitUp(p, timeout, "answering", url+" not answering", func() bool {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
}

// WaitListen waits until addr accepts a TCP connection, p exits, or timeout passes.
func WaitListen(addr string, p *Proc, timeout time.Duration) error {
	return waitUp(p, timeout, "listening", "not listening on "+addr, func() bool {
		c, err := net.DialTimeout("tcp4", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// waitUp polls up every 30 ms until it holds (nil), p exits ("exited before
// <before>") or timeout passes ("<late> after <timeout>").
func waitUp(p *Proc, timeout time.Duration, before, late string, up func() bool) error {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		select {
		case <-p.Done:
			return fmt.Errorf("exited before %s (%v)", before, p.Cmd.ProcessState)
		default:
		}
		if up() {
			return nil
		}
		time.Sleep(30 * time.Millisecond)
	}
	return fmt.Errorf("%s after %v", late, timeout)
}

// Command returns the binary and arguments that run bin with args, on cpus if set
// (taskset execs the command, so the pid is the command's).
func Command(cpus, bin string, args []string) (string, []string) {
	return NicedCommand(0, cpus, bin, args)
}

// NicedCommand is Command run at the niceness nice (nice(1), which execs: the pid is
// the process's own), 0 for the benchmark's own. Every thread of the process has it,
// which setpriority on a running Go process would not give (it sets one thread).
func NicedCommand(nice int, cpus, bin string, args []string) (string, []string) {
	if nice != 0 {
		bin, args = "nice", append([]string{"-n", strconv.Itoa(nice), bin}, args...)
	}
	return taskset(cpus, bin, args)
}

func taskset(cpus, bin string, args []string) (string, []string) {
	if cpus == "" {
		return bin, args
	}
	return "taskset", append([]string{"-c", cpus, bin}, args...)
}

// Stat reads CPU seconds (utime+stime) and RSS in bytes of pid from /proc.
func Stat(pid int) (cpu float64, rss int64) {
	// utime is field 14, stime 15.
	if f := statFields(pid); len(f) > 13 {
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		cpu = (ut + st) / 100 // USER_HZ is 100 on Linux
	}
	return cpu, statusKB(pid, "VmRSS:") * 1024
}

// PeakRSS is the process's high-water resident set (VmHWM), in bytes.
func PeakRSS(pid int) int64 {
	return statusKB(pid, "VmHWM:") * 1024
}

// statusKB is the number of kB that key (such as "VmRSS:") gives in pid's
// /proc/<pid>/status; 0 if unknown.
func statusKB(pid int, key string) int64 {
	v, _ := ProcLine("/proc/"+strconv.Itoa(pid)+"/status", key)
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	kb, _ := strconv.ParseInt(f[0], 10, 64)
	return kb
}

// ProcLine is the rest of the first line of the file at path (under /proc) that
// starts with prefix, trimmed; ok is false if the file is unreadable or no line does.
func ProcLine(path, prefix string) (rest string, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	for _, ln := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(ln, prefix); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// Listeners counts the TCP sockets listening on port (decimal), from /proc/net/tcp and
// tcp6.
func Listeners(port string) int {
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

// RunDelay sums the time pid's threads spent runnable but waiting for a CPU
// (/proc/PID/task/*/schedstat, second field, ns), in seconds. Threads that exited are
// not counted, which only makes it an underestimate.
func RunDelay(pid int) float64 {
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

// StartTime is when pid started, in Unix seconds (the way Prometheus' process collector
// computes process_start_time_seconds: boot time plus the start tick); 0 if unknown.
func StartTime(pid int) float64 {
	// starttime is field 22.
	f := statFields(pid)
	if len(f) < 20 {
		return 0
	}
	ticks, _ := strconv.ParseFloat(f[19], 64)
	return bootTime() + ticks/100
}

// statFields are the fields of /proc/<pid>/stat after the process's name: f[0] is
// field 3 (state). nil if unreadable.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil
	}
	return strings.Fields(s[i+2:])
}

func bootTime() float64 {
	v, _ := ProcLine("/proc/stat", "btime ")
	t, _ := strconv.ParseFloat(v, 64)
	return t
}

// FDs counts pid's open file descriptors; -1 if unknown.
func FDs(pid int) int {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(4096)
		n += len(names)
		if err != nil || len(names) == 0 {
			return n
		}
	}
}

// Sockstat is the kernel's socket accounting of this network namespace
// (/proc/net/sockstat): TCP sockets in use, and the pages their buffers hold (a
// machine-wide figure).
type Sockstat struct {
	TCPInUse, TCPAlloc int64
	TCPMemBytes        int64
}

// ReadSockstat reads /proc/net/sockstat.
func ReadSockstat() Sockstat {
	var s Sockstat
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return s
	}
	for _, ln := range strings.Split(string(b), "\n") {
		f := strings.Fields(ln)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "inuse":
				s.TCPInUse = v
			case "alloc":
				s.TCPAlloc = v
			case "mem":
				s.TCPMemBytes = v * int64(os.Getpagesize())
			}
		}
	}
	return s
}

// socketSlabs are the slab caches a TCP socket and its descriptor take: the socket,
// its inode, file and dentry, its epoll entries and the heads of its buffers.
var socketSlabs = map[string]bool{
	"TCP": true, "TCPv6": true, "sock_inode_cache": true, "filp": true, "dentry": true,
	"eventpoll_epi": true, "eventpoll_pwq": true, "skbuff_head_cache": true,
	"skbuff_small_head": true, "skbuff_fclone_cache": true, "request_sock_TCP": true, "tcp_bind_bucket": true,
}

// SocketSlabBytes sums the slab caches a TCP socket takes (/proc/slabinfo, readable by
// root): objects times object size. These are machine-wide, so a quiet machine gives
// the figure for one process's sockets. -1 if unreadable.
func SocketSlabBytes() int64 {
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		return -1
	}
	var total int64
	for _, ln := range strings.Split(string(b), "\n") {
		f := strings.Fields(ln)
		if len(f) < 4 || !socketSlabs[f[0]] {
			continue
		}
		objs, _ := strconv.ParseInt(f[2], 10, 64)
		size, _ := strconv.ParseInt(f[3], 10, 64)
		total += objs * size
	}
	return total
}
