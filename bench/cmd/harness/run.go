package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"crease/bench/internal/load"
	"crease/bench/internal/procs"
	"crease/bench/internal/report"
)

func (h *harness) run(s *serverSpec, sc scenario) *result {
	r := &result{Server: s.name, Scenario: sc.name}
	var extra []string
	if sc.handover {
		extra = []string{"--reuse-port", "--drain-window", sc.spread.String()}
	}
	g := &load.Group{Bin: h.bin("loadgen"), PerProc: h.perProc}
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
		g.CPUs = fmt.Sprintf("1-%d", n-1)
		if h.redisPid > 0 {
			_ = exec.Command("taskset", "-a", "-p", "-c", g.CPUs, strconv.Itoa(h.redisPid)).Run()
			defer exec.Command("taskset", "-a", "-p", "-c", fmt.Sprintf("0-%d", n-1), strconv.Itoa(h.redisPid)).Run()
		}
	}
	sv, err := h.startServer(s, sc.name, cpus, sc.socket, extra...)
	defer sv.closeSockets()
	if err != nil {
		// A server that cannot start is skipped from here on, with a note, instead of
		// failing every scenario.
		s.skip = "cannot start: " + err.Error()
		h.notes = append(h.notes, fmt.Sprintf("**%s skipped** from %s on: %s", s.name, sc.name, s.skip))
		r.Err = err.Error()
		return r
	}
	// A closure: the storm scenario replaces sv.Proc with the restarted process.
	defer func() { sv.Stop(10 * time.Second) }()
	defer g.Kill()
	switch sc.kind {
	case "idle":
		h.runIdle(s, sv, sc, g, r)
	case "delivery":
		h.runDelivery(s, sv, sc, g, r)
	case "storm":
		h.runStorm(s, sv, sc, g, r)
	}
	return r
}

func (h *harness) readyTimeout(n int) time.Duration {
	return 30*time.Second + time.Duration(n)*time.Millisecond
}

func (h *harness) runIdle(s *serverSpec, sv *server, sc scenario, g *load.Group, r *result) {
	time.Sleep(h.settle)
	_, rss0 := procs.Stat(sv.pid())
	r.RSSBefore = rss0
	have := 0
	for _, lvl := range sc.levels {
		if lvl <= have {
			continue
		}
		from := len(g.Procs)
		if err := g.Add(lvl-have, h.loadArgs(s, sv, sc, 10), filepath.Join(h.logDir, s.name+"-"+sc.name)); err != nil {
			r.Err = err.Error()
			return
		}
		if _, err := g.Ready(from, h.readyTimeout(lvl-have)); err != nil {
			r.Err = err.Error()
			return
		}
		have = lvl
		time.Sleep(h.settle)
		p, err := g.Progress()
		if err != nil {
			r.Err = err.Error()
			return
		}
		_, rss := procs.Stat(sv.pid())
		pt := idlePoint{Conns: p.Open, RSSDelta: rss - rss0}
		if p.Open > 0 {
			pt.PerConn = float64(rss-rss0) / float64(p.Open)
		}
		r.Idle = append(r.Idle, pt)
		r.Target, r.Connected, r.FailedHS, r.HSStatus = int64(lvl), p.Open, p.FailedHandshakes, p.HandshakeStatus
		r.RSSAfter = rss
	}
	if !sv.Alive() {
		r.Err = "server exited"
	}
}

// connectLoad starts the scenario's load clients, following matches, and waits until
// they are connected.
func (h *harness) connectLoad(s *serverSpec, sv *server, sc scenario, g *load.Group, matches int) (report.Line, error) {
	if err := g.Add(sc.conns, h.loadArgs(s, sv, sc, matches), filepath.Join(h.logDir, s.name+"-"+sc.name)); err != nil {
		return report.Line{}, err
	}
	return g.Ready(0, h.readyTimeout(sc.conns))
}

func (h *harness) runDelivery(s *serverSpec, sv *server, sc scenario, g *load.Group, r *result) {
	ready, err := h.connectLoad(s, sv, sc, g, sc.matches)
	if err != nil {
		r.Err = err.Error()
		return
	}
	r.Target, r.Connected, r.FailedHS = int64(sc.conns), ready.Open, ready.FailedHandshakes
	// The ramp leaves work behind (garbage to collect, memory to scavenge): three settle
	// periods keep it out of the publish phase's CPU, for every server alike.
	time.Sleep(3 * h.settle)
	cpu0, rss0 := procs.Stat(sv.pid())
	lcpu0 := g.CPU()
	wait0 := procs.RunDelay(sv.pid())
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
		bin, args := procs.Command(g.CPUs, h.bin("publisher"), pubArgs)
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
		p, err := g.Progress()
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
	cpu1, rss1 := procs.Stat(sv.pid())
	if wall := time.Since(t0).Seconds(); wall > 0 {
		r.RunQueueMS = (procs.RunDelay(sv.pid()) - wait0) * 1000 / wall
	}
	if s.lag && lag0 != nil {
		r.Lag = lagBetween(lag0, scrapeLag(sv.httpAddr))
	}
	r.PeakRSS = procs.PeakRSS(sv.pid())
	r.LoadgenCPU = g.CPU() - lcpu0
	r.RSSAfter = rss1
	r.CPU = cpu1 - cpu0
	r.Wall = doneAt.Sub(t0).Seconds()
	fin, hist, _, err := g.Finish()
	if err != nil && r.Err == "" {
		r.Err = err.Error()
	}
	r.Delivered = fin.Received["delta"]
	r.Gaps, r.Dups, r.Resyncs, r.Closes = fin.Gaps, fin.Dups, fin.Resyncs, fin.Closes
	r.Lat, r.hist = fin.Latency, hist
	if r.Delivered > 0 {
		r.CPUPerM = r.CPU / (float64(r.Delivered) / 1e6)
	}
	if !sv.Alive() && r.Err == "" {
		r.Err = "server exited"
	}
}

func (h *harness) runStorm(s *serverSpec, sv *server, sc scenario, g *load.Group, r *result) {
	ready, err := h.connectLoad(s, sv, sc, g, 10)
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
		sv.Stop(sc.spread + 30*time.Second)
		sv.restarted++
		sv.Proc = next
	} else {
		// Restart: SIGTERM (crease drains), then the same command on the same ports,
		// after the scenario's pause (a restart by hand, a slow start).
		t0 = time.Now()
		sv.Stop(30 * time.Second)
		r.ExitedS = time.Since(t0).Seconds()
		time.Sleep(sc.pause)
		sv.restarted++
		if err := sv.launch(); err != nil {
			r.Err = "restart: " + err.Error()
			return
		}
		r.UpAgainS = time.Since(t0).Seconds()
	}
	deadline := 2 * time.Minute
	if h.quick {
		deadline = 15 * time.Second
	}
	for time.Since(t0) < deadline {
		p, err := g.Progress()
		if err != nil {
			r.Err = err.Error()
			return
		}
		if p.Storm != nil && p.Storm.AllBackUs > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	fin, _, _, err := g.Finish()
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
