package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"crease/bench/internal/load"
	"crease/bench/internal/procs"
	"crease/bench/internal/repo"
	"crease/bench/internal/report"
)

// runner runs one variant. Everything waits through until, which samples every tick
// and checks a condition on the sample: nothing waits by sleeping a guess.
type runner struct {
	o      options
	c      *cluster
	res    *Result
	ctx    context.Context
	t0     time.Time
	phase  string
	groups []*load.Group
	procs  int // load processes started
	e2e    []*hdrhistogram.Histogram
	base   mark // before the first connection
}

// mark is the cumulative counters at one moment, for a cost window.
type mark struct {
	t         time.Time
	open      int64
	received  int64
	serverCPU float64
	serverRSS int64
	lbCPU     float64
	loadCPU   float64
	sock      procs.Sockstat
	slab      int64
}

func runVariant(e *env, o options, variant string) *Result {
	res := &Result{Server: o.server, Variant: variant, Quick: o.quick, Date: time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Commit: repo.Head(e.root), Machine: repo.Machine(), Command: strings.Join(os.Args, " "), Audience: o.audience, Base: o.base,
		Gateways: o.gateways, Loops: o.loops, Stages: o.stages, RampS: o.ramp.Seconds(), HoldS: o.hold.Seconds(), SettleS: o.settle.Seconds(),
		DrainS: o.drain.Seconds(), LoadNice: o.loadNice, Speed: o.speed, SlowFrac: o.slowFrac, SlowRate: o.slowRate, Match: filepath.Base(o.matchFile)}
	r := &runner{o: o, res: res, ctx: context.Background(), t0: time.Now(), phase: "setup",
		c: &cluster{e: e, o: o, variant: variant}}
	defer func() { res.WallS = time.Since(r.t0).Seconds() }()
	if err := r.run(); err != nil {
		res.Failures = append(res.Failures, err.Error()+"; "+r.state())
	}
	r.c.down()
	res.LBs = len(r.c.lbs)
	res.LoadProcs = r.procs
	r.summarise()
	return res
}

func (r *runner) event(what string) {
	r.res.Events = append(r.res.Events, Event{T: time.Since(r.t0).Seconds(), What: what})
	fmt.Fprintf(os.Stderr, "matchday:   %6.1fs %s\n", time.Since(r.t0).Seconds(), what)
}

// until samples every tick until cond holds, and fails after within.
func (r *runner) until(what string, within time.Duration, cond func(s *Sample, lines []report.Line) bool) error {
	end := time.Now().Add(within)
	next := time.Now()
	for {
		s, lines, err := r.sampleNow()
		if err != nil {
			return fmt.Errorf("%s: %v", what, err)
		}
		if cond(s, lines) {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s: not within %v (%d of %d open)", what, within, s.Open, r.o.audience)
		}
		next = next.Add(r.o.tick)
		time.Sleep(max(time.Until(next), 10*time.Millisecond))
	}
}

// hold samples for d.
func (r *runner) hold(d time.Duration) error {
	end := time.Now().Add(d)
	return r.until("hold", d+time.Minute, func(*Sample, []report.Line) bool { return !time.Now().Before(end) })
}

// addLoad starts load processes for n more connections at rate connections per second
// in all (0: as fast as they go).
func (r *runner) addLoad(n int, rate float64) error {
	g := r.c.e.loadGroup(r.o.perProc, r.o.loadNice)
	r.groups = append(r.groups, g)
	for n > 0 {
		k := min(n, r.o.perProc)
		n -= k
		args := []string{"--url", r.c.wsURL, "--matches", r.c.matchID, "--reconnect", "jitter", "--spread", r.o.spread.String(),
			"--snapshot-url", strings.Join(r.c.snapURLs, ","), "--slow-frac", fmt.Sprint(r.o.slowFrac),
			"--slow-rate", fmt.Sprint(r.o.slowRate), "--window-hist", "--workers", "2"}
		if rate > 0 {
			args = append(args, "--connect-rate", fmt.Sprintf("%.1f", rate*float64(k)/float64(k+n)))
			rate -= rate * float64(k) / float64(k+n)
		}
		if r.c.variant == "haproxy" {
			args = append(args, "--cookies")
		}
		if r.o.server == "centrifuge" {
			args = append(args, "--proto", "centrifuge")
		}
		// Each process its own slice of 127.0.0.2-50, counted over the whole run.
		log := filepath.Join(r.c.e.logDir, fmt.Sprintf("%s-lg%d.log", r.c.variant, r.procs))
		if err := g.AddWith(k, load.SourceRange(r.procs), log, args); err != nil {
			return err
		}
		r.procs++
	}
	return nil
}

func (r *runner) mark() mark {
	m := mark{t: time.Now(), sock: procs.ReadSockstat(), slab: procs.SocketSlabBytes()}
	if n := len(r.res.Series); n > 0 {
		last := r.res.Series[n-1]
		m.open, m.received, m.lbCPU, m.loadCPU = last.Open, last.Received, last.LBCPU, last.LoadCPU
	}
	for _, g := range r.c.gws {
		for _, gp := range g.procs {
			if gp.Alive() {
				cpu, rss := procs.Stat(gp.Pid())
				m.serverCPU += cpu
				m.serverRSS += rss
			}
		}
	}
	return m
}

func (r *runner) point(a, b mark) CostPoint {
	return CostPoint{Conns: b.open, WindowS: b.t.Sub(a.t).Seconds(), Delivered: b.received - a.received,
		ServerCPU: b.serverCPU - a.serverCPU, LBCPU: b.lbCPU - a.lbCPU, LoadCPU: b.loadCPU - a.loadCPU,
		ServerRSS: b.serverRSS, ServerRSS0: r.base.serverRSS, SockMem: b.sock.TCPMemBytes, SockMem0: r.base.sock.TCPMemBytes,
		Slab: b.slab, Slab0: r.base.slab, SocketsInUse: b.sock.TCPInUse}
}

func (r *runner) run() error {
	if err := r.c.up(); err != nil {
		return err
	}
	r.base = r.mark()
	r.event(fmt.Sprintf("%d gateways ready", len(r.c.gws)))
	if err := r.c.startIngest(); err != nil {
		return err
	}
	r.event("the match starts: " + r.c.matchID)
	r.phase = "pre-match"
	if err := r.addLoad(r.o.base, 0); err != nil {
		return err
	}
	if err := r.until("the base audience", time.Minute+time.Duration(r.o.base)*time.Millisecond, func(s *Sample, _ []report.Line) bool { return s.Open >= int64(r.o.base) }); err != nil {
		return err
	}
	r.event(fmt.Sprintf("%d connected", r.o.base))
	err := r.ramp()
	if err == nil {
		if err = r.handover(); err == nil {
			r.phase = "after the handover"
			err = r.hold(r.o.after)
		}
	}
	// The final check runs whatever happened before it: a run that went wrong still
	// says what its connections received and whether they ended equal to the snapshot.
	if ferr := r.final(); ferr != nil {
		if err == nil {
			return ferr
		}
		r.soft(ferr)
	}
	return err
}

// soft records a failure the run goes on after (with the state of the processes).
func (r *runner) soft(err error) {
	r.res.Failures = append(r.res.Failures, err.Error()+"; "+r.state())
	r.event("FAILED: " + err.Error())
}

// ramp grows the audience at one rate; it pauses at each stage for the cost window,
// and the pauses are part of the ramp's time. A stage not reached in time is a failure,
// recorded; the run then waits for the stage while the audience still grows (up to
// rampGrace without a new connection) and goes on from where it got, so that the peak,
// the handover and the final check are measured even on a host that cannot open the
// audience at the seed's pace.
func (r *runner) ramp() error {
	connecting := r.o.ramp - time.Duration(len(r.o.stages)-1)*(r.o.settle+r.o.hold)
	rate := float64(r.o.audience-r.o.base) / connecting.Seconds()
	have := r.o.base
	began := time.Now()
	for _, target := range r.o.stages {
		r.phase = fmt.Sprintf("ramp to %d", target)
		if err := r.addLoad(target-have, rate); err != nil {
			return err
		}
		expect := time.Duration(float64(target-have) / rate * float64(time.Second))
		reached := func(s *Sample, _ []report.Line) bool { return s.Open >= int64(target) }
		if err := r.until(r.phase, 2*expect+time.Minute, reached); err != nil {
			r.soft(err)
			if err := r.untilStalled(target); err != nil {
				return err
			}
		}
		have = target
		r.event(fmt.Sprintf("%d connected", r.open()))
		r.phase = fmt.Sprintf("at %d", target)
		if err := r.hold(r.o.settle); err != nil {
			return err
		}
		a := r.mark()
		if err := r.hold(r.o.hold); err != nil {
			return err
		}
		r.res.Points = append(r.res.Points, r.point(a, r.mark()))
	}
	r.res.RampTookS = time.Since(began).Seconds()
	return nil
}

// rampGrace is how long a late stage may go without one more connection open before
// the run goes on without the rest.
const rampGrace = 30 * time.Second

// untilStalled waits until target connections are open, or until the open count has not
// grown for rampGrace.
func (r *runner) untilStalled(target int) error {
	best, at := r.open(), time.Now()
	return r.until(r.phase+" (late)", 10*time.Minute, func(s *Sample, _ []report.Line) bool {
		if s.Open > best {
			best, at = s.Open, time.Now()
		}
		return s.Open >= int64(target) || time.Since(at) > rampGrace
	})
}

// open is the audience open at the last sample.
func (r *runner) open() int64 {
	if n := len(r.res.Series); n > 0 {
		return r.res.Series[n-1].Open
	}
	return 0
}

// handover restarts gateway 1 at the peak: a successor binds its ports, then the old
// process gets SIGTERM and drains into it (and, on one shared port, into every gateway).
func (r *runner) handover() error {
	g := r.c.gws[0]
	old := g.current()
	before := listeners(g)
	r.phase = "handover"
	succ, err := r.c.startGateway(g)
	if err != nil {
		return err
	}
	if err := r.until("the successor binds", 20*time.Second, func(*Sample, []report.Line) bool { return !succ.Alive() || listeners(g) > before }); err != nil {
		return err
	}
	if !succ.Alive() {
		return fmt.Errorf("the successor exited: %s", r.c.logTail(fmt.Sprintf("%s-%s-1.log", r.c.variant, g.name)))
	}
	succ.baseFDs = procs.FDs(succ.Pid())
	last := r.res.Series[len(r.res.Series)-1]
	h := &Handover{Gateway: g.name}
	for _, gs := range last.Gateways {
		if gs.Label == old.label {
			h.DrainedConns = gs.Conns
		}
	}
	t0 := time.Now()
	f0, rs0 := last.Failures, last.Resyncs
	peak := min(last.Open, int64(r.o.audience)) // all of it, or what a late ramp reached
	_ = old.Cmd.Process.Signal(syscall.SIGTERM)
	r.event(fmt.Sprintf("%s restarted by handover: SIGTERM to the old process (%.0f connections)", g.name, h.DrainedConns))
	var exited, back bool
	err = r.until("the handover", r.o.drain+time.Minute, func(s *Sample, _ []report.Line) bool {
		if !exited && !old.Alive() {
			exited, h.ExitS = true, time.Since(t0).Seconds()
			r.event(fmt.Sprintf("the old %s exited", g.name))
		}
		if !back && s.Open >= peak && exited {
			back, h.BackS = true, time.Since(t0).Seconds()
			h.Failures, h.Resyncs = s.Failures-f0, s.Resyncs-rs0
			for _, gs := range s.Gateways {
				if gs.Label == succ.label {
					h.ToSuccessor = gs.Conns
				}
			}
			r.event(fmt.Sprintf("all %d back", peak))
		}
		return exited && back
	})
	r.res.Handover = h
	return err
}

// final stops the match and checks that every connection ends equal to the snapshot.
func (r *runner) final() error {
	r.phase = "final check"
	if err := r.c.stopIngest(); err != nil {
		return err
	}
	r.event("the publisher stopped")
	for _, g := range r.groups {
		for _, p := range g.Procs {
			_ = p.Cmd.Process.Signal(syscall.SIGUSR2)
		}
	}
	var lines []report.Line
	err := r.until("every connection equal to the final snapshot", r.o.finalWait, func(_ *Sample, ls []report.Line) bool {
		lines = ls
		var equal, open int64
		for _, ln := range ls {
			if ln.Chain == nil || !ln.Chain.Final {
				return false
			}
			equal += ln.Chain.Equal
			open += ln.Open
		}
		// Every connection open (all of the audience, or what a late ramp reached):
		// check counts the missing ones as a failure.
		return equal >= min(open, int64(r.o.audience))
	})
	if err != nil && len(lines) > 0 {
		m := mergeChains(lines)
		err = fmt.Errorf("%v: equal %d, behind %d, waiting %d, tainted %d", err, m.Equal, m.Behind, m.Waiting, m.Tainted)
	}
	r.event("final check done")
	var fin report.Line
	var hist *hdrhistogram.Histogram
	var all []report.Line
	for _, g := range r.groups {
		f, h, ls, ferr := g.Finish()
		if ferr != nil && err == nil {
			err = fmt.Errorf("stopping the load: %v", ferr)
		}
		all = append(all, ls...)
		_ = f
		if hist == nil {
			hist = h
		} else {
			hist.Merge(h)
		}
	}
	fin = load.Merge(all)
	r.res.Totals = Totals{Received: fin.Received, Resyncs: fin.Resyncs, Closes: fin.Closes, HandshakeStatus: fin.HandshakeStatus,
		Gaps: fin.Gaps, Dups: fin.Dups, ProtocolErrors: fin.ProtocolErrors, OffCookie: fin.OffCookie, Slow: fin.Slow,
		Chain: mergeChains(all), Connected: fin.Open}
	if hist != nil {
		r.res.Totals.Latency = report.Summarise(hist)
	}
	r.res.Totals.Equal = r.res.Totals.Chain.Equal
	r.res.Totals.StateOK = r.res.Totals.Chain.StateOK
	r.check(all)
	return err
}

// check records every way the run broke the contract.
func (r *runner) check(lines []report.Line) {
	t := r.res.Totals
	fail := func(f string, a ...any) { r.res.Failures = append(r.res.Failures, fmt.Sprintf(f, a...)) }
	if t.Equal < int64(r.o.audience) {
		fail("%d of %d connections ended equal to the final snapshot (behind %d, waiting %d, tainted %d)",
			t.Equal, r.o.audience, t.Chain.Behind, t.Chain.Waiting, t.Chain.Tainted)
	}
	if !t.StateOK {
		fail("a load process's state (the deltas applied to its first snapshot) is not the final snapshot's")
	}
	if t.Gaps > 0 || t.Dups > 0 {
		fail("delivery rules broken: %d gaps without resync, %d duplicate or older deltas", t.Gaps, t.Dups)
	}
	if c := t.Chain; c.Divergent > 0 || c.SnapshotMismatch > 0 || c.BadPatches > 0 {
		fail("%d deltas differ between connections, %d snapshots disagree with the deltas, %d patches unreadable",
			c.Divergent, c.SnapshotMismatch, c.BadPatches)
	}
	if t.ProtocolErrors > 0 {
		fail("%d WebSocket protocol errors", t.ProtocolErrors)
	}
	if r.c.variant == "haproxy" && t.OffCookie > 0 {
		fail("%d upgrades landed on another gateway than their SRV cookie names", t.OffCookie)
	}
	if lines == nil {
		fail("no final report from the load processes")
	}
	if h := r.res.Handover; h != nil && h.ToSuccessor <= 0 {
		fail("the successor of %s holds no connection after the handover", h.Gateway)
	}
	if r.o.quick {
		return // the quick run checks correctness only
	}
}

func mergeChains(lines []report.Line) report.Chain {
	m := report.Chain{StateOK: len(lines) > 0}
	for _, ln := range lines {
		c := ln.Chain
		if c == nil {
			m.StateOK = false
			continue
		}
		m.StateOK = m.StateOK && c.StateOK
		m.StateUnknown = m.StateUnknown || c.StateUnknown
		m.Snapshots += c.Snapshots
		m.SnapshotErrors += c.SnapshotErrors
		m.Refetches += c.Refetches
		m.GaveUp += c.GaveUp
		m.Divergent += c.Divergent
		m.SnapshotMismatch += c.SnapshotMismatch
		m.Applied += c.Applied
		m.BadPatches += c.BadPatches
		m.Equal += c.Equal
		m.Behind += c.Behind
		m.Waiting += c.Waiting
		m.Tainted += c.Tainted
		m.Final = c.Final
		m.FinalSeq = max(m.FinalSeq, c.FinalSeq)
	}
	return m
}

// state says what the run's processes looked like when it stopped: where a server
// could not hold the audience, the reason is usually here (a process gone, memory).
func (r *runner) state() string {
	alive, total := 0, 0
	var rss int64
	var gone []string
	for _, g := range r.c.gws {
		for _, gp := range g.procs {
			total++
			if gp.Alive() {
				alive++
				_, m := procs.Stat(gp.Pid())
				rss += m
			} else if gp.Cmd.ProcessState != nil && !gp.Cmd.ProcessState.Success() && len(g.procs) == 1 {
				gone = append(gone, gp.label+" "+gp.Cmd.ProcessState.String())
			}
		}
	}
	s := fmt.Sprintf("at %.0f s in %q: %d of %d gateway processes alive, %.0f MB RSS in all, %.1f GB of memory available",
		time.Since(r.t0).Seconds(), r.phase, alive, total, float64(rss)/(1<<20), float64(repo.MemAvailable())/(1<<30))
	if len(gone) > 0 {
		s += "; exited: " + strings.Join(gone, ", ")
	}
	return s
}
