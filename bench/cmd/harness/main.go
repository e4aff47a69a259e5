// Command harness runs the benchmark scenarios against every server in turn (crease and
// the baselines), each in fresh processes on a private Redis, and writes BENCHMARKS.md
// and plots. `crease bench` and `make bench` call it; -quick is the CI smoke run.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"crease/bench/internal/report"
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

type scenario struct {
	name, title string
	kind        string // idle, delivery, storm
	conns       int
	matches     int
	hot, stall  float64
	rate        float64
	count       int
	reconnect   string
	spread      time.Duration
	levels      []int
	only        string // run this scenario for one server only (a baseline of its own)
	// handover: the storm restarts the server by starting a successor on the same ports
	// (--reuse-port) before the SIGTERM, and the drain window equals spread.
	handover bool
	// pin: the server runs with one loop on CPU 0, everything else (load generator,
	// publisher, Redis) on the other CPUs.
	pin bool
}

type idlePoint struct {
	Conns    int64
	RSSDelta int64
	PerConn  float64 // bytes
}

type result struct {
	Server, Scenario string
	Err              string
	Target           int64
	Connected        int64
	FailedHS         int64
	Expected         int64
	Delivered        int64
	Gaps, Dups       int64
	Resyncs, Closes  map[string]int64
	HSStatus         map[string]int64
	CPU              float64
	CPUPerM          float64
	LoadgenCPU       float64
	Wall             float64
	Lat              *report.Percentiles
	hist             *hdrhistogram.Histogram
	RSSBefore        int64
	RSSAfter         int64
	PeakRSS          int64
	Idle             []idlePoint
	AllBack          bool
	AllBackS         float64
	PeakHSPerS       float64
	Failures         int64
	Reconnects       int64
	Stalled          int64
	Extra            string
	// RunQueueMS is how long the server's threads waited, runnable, for a CPU: ms per
	// second of the delivery run (schedstat run_delay, summed over threads).
	RunQueueMS float64
	Lag        *lagStats
}

type harness struct {
	root, benchDir, binDir, logDir string
	quick                          bool
	perProc                        int
	settle                         time.Duration
	redisAddr                      string
	redisPid                       int
	servers                        []*serverSpec
	scenarios                      []scenario
	results                        []*result
	notes                          []string
	failures                       []string
}

func (h *harness) bin(name string) string { return filepath.Join(h.binDir, name) }

func main() {
	quick := flag.Bool("quick", false, "tiny sizes: a smoke run under a minute that checks the harness works (not speed)")
	serversF := flag.String("servers", "crease,naive,centrifuge,floor1,floor10,bare", "servers to measure")
	scenariosF := flag.String("scenarios", "idle,steady10,steady2,lag-pinned,burst,skew,slow0,slow,storm-fixed,storm-jitter,storm-handover", "scenarios to run")
	creaseBin := flag.String("crease-bin", "", "crease binary to measure (default: build ./cmd/crease of the repo; skipped if that fails)")
	loops := flag.Int("loops", 2, "crease --loops")
	creasePub := flag.String("crease-publish", "crease-lua", "how deltas reach crease: crease-lua (crease/bus/redis, as ingest does) or crease (a bare PUBLISH, like the baselines)")
	out := flag.String("out", "", "markdown report (default BENCHMARKS.md at the repo root, or bench/bin/BENCHMARKS-quick.md with -quick)")
	plots := flag.String("plots", "", "plot directory (default bench/plots, or bench/bin/plots-quick with -quick)")
	conns := flag.Int("conns", 15000, "connections for the delivery and storm scenarios")
	perProc := flag.Int("per-proc", 9000, "connections per loadgen process (under ~18,000 descriptors each)")
	levels := flag.String("idle-levels", "1000,5000,10000,18000", "connection counts of the idle density scenario")
	flag.Parse()

	h := &harness{quick: *quick, perProc: *perProc, settle: time.Second}
	if err := h.locate(); err != nil {
		die("%v", err)
	}
	if *out == "" {
		*out = filepath.Join(h.root, "BENCHMARKS.md")
		if h.quick {
			*out = filepath.Join(h.binDir, "BENCHMARKS-quick.md")
		}
	}
	if *plots == "" {
		*plots = filepath.Join(h.benchDir, "plots")
		if h.quick {
			*plots = filepath.Join(h.binDir, "plots-quick")
		}
	}
	var lv []int
	for _, s := range strings.Split(*levels, ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && v > 0 {
			lv = append(lv, v)
		}
	}
	if h.quick {
		*conns = 200
		lv = []int{100, 300}
		h.settle = 200 * time.Millisecond
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if h.quick && !set["scenarios"] {
		// The jittered storm waits out the spread and crease's drain: too long for a smoke run.
		*scenariosF = strings.Replace(*scenariosF, ",storm-jitter", "", 1)
	}
	h.scenarios = pickScenarios(*scenariosF, *conns, lv, h.quick)
	h.logDir = filepath.Join(h.binDir, "logs", time.Now().Format("20060102-150405"))
	_ = os.MkdirAll(h.logDir, 0o755)

	started := time.Now()
	if err := h.build(); err != nil {
		die("%v", err)
	}
	h.defineServers(*serversF, *creaseBin, *loops, *creasePub)
	stopRedis, err := h.startRedis()
	if err != nil {
		die("redis: %v (install redis-server: apt-get install -y redis-server)", err)
	}
	defer stopRedis()

	for _, sc := range h.scenarios {
		for _, s := range h.servers {
			if s.skip != "" {
				continue // skipped before, or could not start in an earlier scenario
			}
			if !s.fanout && sc.kind == "delivery" || sc.only != "" && sc.only != s.name {
				continue
			}
			fmt.Fprintf(os.Stderr, "harness: %s / %s\n", sc.name, s.name)
			r := h.run(s, sc)
			h.results = append(h.results, r)
			if r.Err != "" {
				fmt.Fprintf(os.Stderr, "harness:   error: %s\n", r.Err)
			}
			if s.skip == "" {
				h.check(s, sc, r)
			}
		}
	}
	stopRedis()
	if err := h.write(*out, *plots, started); err != nil {
		die("write: %v", err)
	}
	fmt.Fprintf(os.Stderr, "harness: wrote %s and plots in %s (%v)\n", *out, *plots, time.Since(started).Round(time.Second))
	if h.quick && len(h.failures) > 0 {
		for _, f := range h.failures {
			fmt.Fprintln(os.Stderr, "FAIL:", f)
		}
		os.Exit(1)
	}
	if h.quick {
		fmt.Fprintf(os.Stderr, "harness: quick run OK (%d runs)\n", len(h.results))
	}
}

func die(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "harness: "+f+"\n", a...)
	os.Exit(1)
}

// locate finds the repo root (module crease) and bench/ from the working directory.
func (h *harness) locate() error {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "module crease\n") {
			h.root = d
			h.benchDir = filepath.Join(d, "bench")
			h.binDir = filepath.Join(h.benchDir, "bin")
			return nil
		}
		if d == filepath.Dir(d) {
			return fmt.Errorf("run me inside the crease repository (no go.mod of module crease above %s)", dir)
		}
	}
}

// build compiles the load tools (required) and the baselines (each optional).
func (h *harness) build() error {
	for _, name := range []string{"loadgen", "publisher"} {
		if out, err := goBuild(h.benchDir, h.bin(name), "./cmd/"+name); err != nil {
			return fmt.Errorf("build %s: %v\n%s", name, err, out)
		}
	}
	return nil
}

func goBuild(dir, out, pkg string) (string, error) {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = dir
	b, err := cmd.CombinedOutput()
	return string(b), err
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
				if out, err := goBuild(h.root, creaseBin, "./cmd/crease"); err != nil {
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
				out, err := goBuild(h.benchDir, h.bin(s.bin), "./cmd/"+s.bin)
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
	port := freePort()
	h.redisAddr = "127.0.0.1:" + strconv.Itoa(port)
	p, _, err := start("redis-server", []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"},
		filepath.Join(h.logDir, "redis.log"))
	if err != nil {
		return func() {}, err
	}
	if err := waitListen(h.redisAddr, p.cmd, p.done, 10*time.Second); err != nil {
		p.stop(time.Second)
		return func() {}, err
	}
	h.redisPid = p.cmd.Process.Pid
	stopped := false
	return func() {
		if !stopped {
			stopped = true
			p.stop(3 * time.Second)
		}
	}, nil
}

func pickScenarios(list string, conns int, levels []int, quick bool) []scenario {
	spread := 5 * time.Second
	// The slow mix needs more bytes per stalled connection than the kernel buffers hold
	// (~20-70 KB on loopback), or no server ever notices a stalled reader.
	steadyCount, slowCount, burst := 100, 400, 200
	if quick {
		spread = 500 * time.Millisecond
		steadyCount, slowCount, burst = 10, 20, 20
	}
	all := []scenario{
		{name: "idle", title: "Idle density", kind: "idle", levels: levels},
		{name: "steady10", title: "Steady, 10 deltas/s to everyone", kind: "delivery", conns: conns, matches: 10, rate: 10, count: steadyCount},
		{name: "steady2", title: "Steady, 2 deltas/s to everyone", kind: "delivery", conns: conns, matches: 10, rate: 2, count: max(steadyCount/5, 3)},
		{name: "burst", title: "Burst: deltas as fast as possible, all on one match", kind: "delivery", conns: conns, matches: 1, count: burst},
		{name: "skew", title: "Hot-match skew: 80% on one match, the rest over 50 cold ones, 10 deltas/s each", kind: "delivery", conns: conns, matches: 51, hot: 0.8, rate: 10, count: steadyCount / 2},
		{name: "lag-pinned", title: "Steady, 2 deltas/s, the gateway on a core of its own: crease --loops 1 on CPU 0, load generator, publisher and Redis on the others (crease only: its loop lag without CPU contention)",
			kind: "delivery", conns: conns, matches: 10, rate: 2, count: max(steadyCount/5, 3), only: "crease", pin: true},
		{name: "slow0", title: "Slow-client mix, baseline: nobody stalled, 40 deltas/s (crease only: the reference for its own 10% stalled row)", kind: "delivery", conns: conns, matches: 10, rate: 40, count: slowCount, only: "crease"},
		{name: "slow", title: "Slow-client mix: 10% stop reading, 40 deltas/s", kind: "delivery", conns: conns, matches: 10, stall: 0.1, rate: 40, count: slowCount},
		{name: "storm-fixed", title: "Reconnect storm (server restarted), clients retry after a fixed 100 ms, no jitter", kind: "storm", conns: conns, reconnect: "fixed"},
		{name: "storm-jitter", title: fmt.Sprintf("Reconnect storm (server restarted), clients spread over %v then back off with full jitter", spread), kind: "storm", conns: conns, reconnect: "jitter", spread: spread},
		{name: "storm-handover", title: fmt.Sprintf("Reconnect storm, restart by handover (crease only): a successor binds the same ports with --reuse-port, then the old gateway drains over %v", spread),
			kind: "storm", conns: conns, reconnect: "jitter", spread: spread, handover: true, only: "crease"},
	}
	want := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		want[strings.TrimSpace(s)] = true
	}
	var out []scenario
	for _, s := range all {
		if want[s.name] {
			out = append(out, s)
		}
	}
	return out
}

type server struct {
	*proc
	spec      *serverSpec
	args      []string
	log       string
	wsAddr    string
	httpAddr  string
	cpus      string // taskset CPU list, "" for any
	restarted int
}

func (h *harness) startServer(s *serverSpec, tag, cpus string, extra ...string) (*server, error) {
	ws := "127.0.0.1:" + strconv.Itoa(freePort())
	hp := "127.0.0.1:" + strconv.Itoa(freePort())
	sv := &server{spec: s, args: append(s.args(ws, hp, h.redisAddr), extra...), log: filepath.Join(h.logDir, s.name+"-"+tag), wsAddr: ws, httpAddr: hp, cpus: cpus}
	return sv, sv.launch()
}

// command returns the binary and arguments that run bin with args, on cpus if set
// (taskset execs the command, so the pid is the command's).
func command(cpus, bin string, args []string) (string, []string) {
	if cpus == "" {
		return bin, args
	}
	return "taskset", append([]string{"-c", cpus, bin}, args...)
}

// launchSuccessor starts a second process of sv's command on the same ports (it must
// bind them with SO_REUSEPORT) and waits until the kernel lists both listeners.
func (sv *server) launchSuccessor() (*proc, error) {
	bin, args := command(sv.cpus, sv.spec.bin, sv.args)
	p, _, err := start(bin, args, fmt.Sprintf("%s-%d.log", sv.log, sv.restarted+1))
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(sv.wsAddr)
	end := time.Now().Add(15 * time.Second)
	for listeners(port) < 2 {
		if !p.alive() || time.Now().After(end) {
			p.stop(time.Second)
			return nil, fmt.Errorf("successor did not bind %s (log %s-%d.log)", sv.wsAddr, sv.log, sv.restarted+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Bound is not yet accepting: give its event loops and bus the moment they take.
	time.Sleep(500 * time.Millisecond)
	return p, nil
}

func (sv *server) launch() error {
	bin, args := command(sv.cpus, sv.spec.bin, sv.args)
	p, _, err := start(bin, args, fmt.Sprintf("%s-%d.log", sv.log, sv.restarted))
	if err != nil {
		return err
	}
	sv.proc = p
	if err := waitListen(sv.wsAddr, p.cmd, p.done, 15*time.Second); err != nil {
		p.stop(time.Second)
		return fmt.Errorf("%s: %v (log %s-%d.log)", sv.spec.name, err, sv.log, sv.restarted)
	}
	return nil
}

func (sv *server) pid() int { return sv.cmd.Process.Pid }

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

func (h *harness) run(s *serverSpec, sc scenario) *result {
	r := &result{Server: s.name, Scenario: sc.name}
	var extra []string
	if sc.handover {
		extra = []string{"--reuse-port", "--drain-window", sc.spread.String()}
	}
	var g loadgens
	cpus := ""
	if sc.pin {
		n := runtime.NumCPU()
		if n < 2 {
			r.Err = "needs 2 CPUs"
			return r
		}
		if _, err := exec.LookPath("taskset"); err != nil {
			r.Err = "taskset (util-linux) not found"
			return r
		}
		cpus = "0"
		extra = append(extra, "--loops", "1")
		g.cpus = fmt.Sprintf("1-%d", n-1)
		if h.redisPid > 0 {
			_ = exec.Command("taskset", "-a", "-p", "-c", g.cpus, strconv.Itoa(h.redisPid)).Run()
			defer exec.Command("taskset", "-a", "-p", "-c", fmt.Sprintf("0-%d", n-1), strconv.Itoa(h.redisPid)).Run()
		}
	}
	sv, err := h.startServer(s, sc.name, cpus, extra...)
	if err != nil {
		// A server that cannot start is skipped from here on, with a note, instead of
		// failing every scenario.
		s.skip = "cannot start: " + err.Error()
		h.notes = append(h.notes, fmt.Sprintf("**%s skipped** from %s on: %s", s.name, sc.name, s.skip))
		r.Err = err.Error()
		return r
	}
	// A closure: the storm scenario replaces sv.proc with the restarted process.
	defer func() { sv.stop(10 * time.Second) }()
	defer g.kill()
	switch sc.kind {
	case "idle":
		h.runIdle(s, sv, sc, &g, r)
	case "delivery":
		h.runDelivery(s, sv, sc, &g, r)
	case "storm":
		h.runStorm(s, sv, sc, &g, r)
	}
	return r
}

func (h *harness) readyTimeout(n int) time.Duration {
	return 30*time.Second + time.Duration(n)*time.Millisecond
}

func (h *harness) runIdle(s *serverSpec, sv *server, sc scenario, g *loadgens, r *result) {
	time.Sleep(h.settle)
	_, rss0 := procStat(sv.pid())
	r.RSSBefore = rss0
	have := 0
	for _, lvl := range sc.levels {
		if lvl <= have {
			continue
		}
		from := len(g.procs)
		if err := g.add(h, lvl-have, h.loadArgs(s, sv, sc, 10), filepath.Join(h.logDir, s.name+"-"+sc.name)); err != nil {
			r.Err = err.Error()
			return
		}
		if _, err := g.ready(from, h.readyTimeout(lvl-have)); err != nil {
			r.Err = err.Error()
			return
		}
		have = lvl
		time.Sleep(h.settle)
		p, err := g.progress()
		if err != nil {
			r.Err = err.Error()
			return
		}
		_, rss := procStat(sv.pid())
		pt := idlePoint{Conns: p.Open, RSSDelta: rss - rss0}
		if p.Open > 0 {
			pt.PerConn = float64(rss-rss0) / float64(p.Open)
		}
		r.Idle = append(r.Idle, pt)
		r.Target, r.Connected, r.FailedHS, r.HSStatus = int64(lvl), p.Open, p.FailedHandshakes, p.HandshakeStatus
		r.RSSAfter = rss
	}
	if !sv.alive() {
		r.Err = "server exited"
	}
}

func (h *harness) runDelivery(s *serverSpec, sv *server, sc scenario, g *loadgens, r *result) {
	if err := g.add(h, sc.conns, h.loadArgs(s, sv, sc, sc.matches), filepath.Join(h.logDir, s.name+"-"+sc.name)); err != nil {
		r.Err = err.Error()
		return
	}
	ready, err := g.ready(0, h.readyTimeout(sc.conns))
	if err != nil {
		r.Err = err.Error()
		return
	}
	r.Target, r.Connected, r.FailedHS = int64(sc.conns), ready.Open, ready.FailedHandshakes
	// The ramp leaves work behind (garbage to collect, memory to scavenge): three settle
	// periods keep it out of the publish phase's CPU, for every server alike.
	time.Sleep(3 * h.settle)
	cpu0, rss0 := procStat(sv.pid())
	lcpu0 := g.cpu()
	wait0 := runDelay(sv.pid())
	var lag0 map[float64]float64
	if s.lag {
		lag0 = scrapeLag(sv.httpAddr)
	}
	r.RSSBefore = rss0
	pubArgs := []string{"--redis", h.redisAddr, "--match-count", strconv.Itoa(sc.matches), "--count", strconv.Itoa(sc.count),
		"--rate", fmt.Sprint(sc.rate), "--target", s.target}
	pubDone := make(chan string, 1)
	t0 := time.Now()
	go func() {
		bin, args := command(g.cpus, h.bin("publisher"), pubArgs)
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			pubDone <- "publisher: " + err.Error() + ": " + firstLine(string(out))
			return
		}
		pubDone <- ""
	}()
	// Every connection gets every delta of its own match, so each expects count.
	r.Stalled = ready.Stalled
	r.Expected = (ready.Open - ready.Stalled) * int64(sc.count)
	poll := 250 * time.Millisecond
	quiet := 3 * time.Second
	if h.quick {
		poll, quiet = 50*time.Millisecond, time.Second
	}
	var last int64 = -1
	lastChange := time.Now()
	pubFinished := false
	var doneAt time.Time
	for {
		select {
		case e := <-pubDone:
			pubFinished = true
			if e != "" {
				r.Err = e
			}
		default:
		}
		p, err := g.progress()
		if err != nil {
			r.Err = err.Error()
			return
		}
		d := p.Received["delta"]
		if d != last {
			last, lastChange = d, time.Now()
		}
		if d >= r.Expected && pubFinished {
			doneAt = time.Now()
			break
		}
		if pubFinished && time.Since(lastChange) > quiet {
			doneAt = lastChange
			break
		}
		if time.Since(t0) > time.Duration(float64(sc.count)/max(sc.rate, 1)*float64(time.Second))+3*time.Minute {
			r.Err = "timed out waiting for deliveries"
			doneAt = time.Now()
			break
		}
		time.Sleep(poll)
	}
	cpu1, rss1 := procStat(sv.pid())
	if wall := time.Since(t0).Seconds(); wall > 0 {
		r.RunQueueMS = (runDelay(sv.pid()) - wait0) * 1000 / wall
	}
	if s.lag && lag0 != nil {
		r.Lag = lagBetween(lag0, scrapeLag(sv.httpAddr))
	}
	r.PeakRSS = peakRSS(sv.pid())
	r.LoadgenCPU = g.cpu() - lcpu0
	r.RSSAfter = rss1
	r.CPU = cpu1 - cpu0
	r.Wall = doneAt.Sub(t0).Seconds()
	fin, hist, _, err := g.finish()
	if err != nil && r.Err == "" {
		r.Err = err.Error()
	}
	r.Delivered = fin.Received["delta"]
	r.Gaps, r.Dups, r.Resyncs, r.Closes = fin.Gaps, fin.Dups, fin.Resyncs, fin.Closes
	r.Lat, r.hist = fin.Latency, hist
	if r.Delivered > 0 {
		r.CPUPerM = r.CPU / (float64(r.Delivered) / 1e6)
	}
	if !sv.alive() && r.Err == "" {
		r.Err = "server exited"
	}
}

func (h *harness) runStorm(s *serverSpec, sv *server, sc scenario, g *loadgens, r *result) {
	if err := g.add(h, sc.conns, h.loadArgs(s, sv, sc, 10), filepath.Join(h.logDir, s.name+"-"+sc.name)); err != nil {
		r.Err = err.Error()
		return
	}
	ready, err := g.ready(0, h.readyTimeout(sc.conns))
	if err != nil {
		r.Err = err.Error()
		return
	}
	r.Target, r.Connected = int64(sc.conns), ready.Open
	time.Sleep(h.settle)
	var t0 time.Time
	if sc.handover {
		// Handover: the successor binds the same ports first, then the old one gets
		// SIGTERM, closes its listeners and drains into it.
		next, err := sv.launchSuccessor()
		if err != nil {
			r.Err = "handover: " + err.Error()
			return
		}
		t0 = time.Now()
		sv.stop(sc.spread + 30*time.Second)
		sv.restarted++
		sv.proc = next
	} else {
		// Restart: SIGTERM (crease drains), then the same command on the same ports.
		t0 = time.Now()
		sv.stop(30 * time.Second)
		sv.restarted++
		if err := sv.launch(); err != nil {
			r.Err = "restart: " + err.Error()
			return
		}
	}
	deadline := 2 * time.Minute
	if h.quick {
		deadline = 15 * time.Second
	}
	for time.Since(t0) < deadline {
		p, err := g.progress()
		if err != nil {
			r.Err = err.Error()
			return
		}
		if p.Storm != nil && p.Storm.AllBackUs > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fin, _, _, err := g.finish()
	if err != nil && r.Err == "" {
		r.Err = err.Error()
	}
	r.Connected = fin.Open
	r.FailedHS = fin.FailedHandshakes
	r.Failures = fin.FailedHandshakes + fin.ConnectErrors
	r.HSStatus, r.Closes = fin.HandshakeStatus, fin.Closes
	if st := fin.Storm; st != nil {
		r.Reconnects = st.Reconnects
		if st.AllBackUs > 0 {
			r.AllBack = true
			r.AllBackS = float64(st.AllBackUs-t0.UnixMicro()) / 1e6
		}
		// Peak over any 1 s window: single 100 ms buckets exaggerate short clumps.
		var peak int64
		for k := range st.Handshakes {
			var sum int64
			for j := int64(0); j < 10; j++ {
				sum += st.Handshakes[k+j]
			}
			peak = max(peak, sum)
		}
		r.PeakHSPerS = float64(peak)
	}
}

// check records what a quick run must see for the harness to count as working.
func (h *harness) check(s *serverSpec, sc scenario, r *result) {
	fail := func(f string, a ...any) {
		h.failures = append(h.failures, fmt.Sprintf("%s/%s: ", s.name, sc.name)+fmt.Sprintf(f, a...))
	}
	if r.Err != "" {
		fail("%s", r.Err)
		return
	}
	if s.name == "crease" {
		// The gateway's own correctness is its tests' business; here only the harness is checked.
		return
	}
	if r.Connected < r.Target {
		fail("connected %d of %d", r.Connected, r.Target)
	}
	switch sc.kind {
	case "delivery":
		if sc.stall == 0 && r.Delivered < r.Expected {
			fail("delivered %d of %d", r.Delivered, r.Expected)
		}
		if r.Dups > 0 {
			fail("%d duplicates", r.Dups)
		}
	case "storm":
		if !r.AllBack {
			fail("not all back after the restart")
		}
	case "idle":
		if len(r.Idle) == 0 {
			fail("no idle points")
		}
	}
}
