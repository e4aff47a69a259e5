package main

import (
	"math"
	"net/http"
	"time"

	"crease/bench/internal/load"
	"crease/bench/internal/procs"
	"crease/bench/internal/prom"
	"crease/bench/internal/report"
)

// Sample is one tick of the run: the audience as the load processes see it, and each
// gateway process as its /metrics and /proc see it. Latencies are ms over the last
// window (windowTicks ticks); NaN is written as null.
type Sample struct {
	T         float64    `json:"t"` // s since the run started
	Phase     string     `json:"phase"`
	Open      int64      `json:"open"`
	Received  int64      `json:"received"` // delta + event frames, since the start
	Resyncs   int64      `json:"resyncs"`
	Failures  int64      `json:"failures"` // failed connects and handshakes, since the start
	E2EP50    jsonFloat  `json:"e2e_p50_ms"`
	E2EP99    jsonFloat  `json:"e2e_p99_ms"`
	Gateways  []GwSample `json:"gateways"`
	SockMem   int64      `json:"sock_mem"`
	SockInUse int64      `json:"sock_inuse"`
	Slab      int64      `json:"slab"`
	LoadCPU   float64    `json:"load_cpu"`
	LBCPU     float64    `json:"lb_cpu"`
}

// GwSample is one gateway process at one tick.
type GwSample struct {
	Label     string    `json:"label"`
	Conns     float64   `json:"conns"`
	FromFDs   bool      `json:"from_fds,omitempty"` // Conns counted from descriptors, not the metric
	LagP99    jsonFloat `json:"lag_p99_ms"`
	FanoutP99 jsonFloat `json:"fanout_p99_ms"`
	BusP99    jsonFloat `json:"bus_p99_ms"`
	CPU       float64   `json:"cpu"` // s since the process started
	RSS       int64     `json:"rss"`
}

// scrape is what one /metrics page of a crease gateway says, reduced to what is used.
type scrape struct {
	t                float64
	conns            float64
	lag, fanout, bus map[float64]float64
}

// windowTicks is how many ticks the latency quantiles of a sample cover: one tick holds
// too few loop-lag probes for a p99.
const windowTicks = 5

var scrapeClient = &http.Client{Timeout: 3 * time.Second}

// sampleNow takes one sample; it is the only reader of the load processes' lines.
func (r *runner) sampleNow() (*Sample, []report.Line, error) {
	s := &Sample{T: time.Since(r.t0).Seconds(), Phase: r.phase}
	lines, err := r.progress()
	if err != nil {
		return nil, nil, err
	}
	m := load.Merge(lines)
	s.Open = m.Open
	s.Received = m.Received["delta"] + m.Received["event"]
	for _, v := range m.Resyncs {
		s.Resyncs += v
	}
	s.Failures = m.FailedHandshakes + m.ConnectErrors
	win := report.MergeHists(lines, func(ln report.Line) string { return ln.WindowHist })
	r.e2e = append(r.e2e, win)
	if len(r.e2e) > windowTicks {
		r.e2e = r.e2e[1:]
	}
	all := report.NewHist()
	for _, h := range r.e2e {
		all.Merge(h)
	}
	s.E2EP50, s.E2EP99 = nan(), nan()
	if all.TotalCount() > 0 {
		s.E2EP50 = jsonFloat(float64(all.ValueAtQuantile(50)) / 1000)
		s.E2EP99 = jsonFloat(float64(all.ValueAtQuantile(99)) / 1000)
	}
	for _, g := range r.c.gws {
		s.Gateways = append(s.Gateways, r.sampleGateway(g, s.T)...)
	}
	ss := procs.ReadSockstat()
	s.SockMem, s.SockInUse, s.Slab = ss.TCPMemBytes, ss.TCPInUse, procs.SocketSlabBytes()
	for _, g := range r.groups {
		s.LoadCPU += g.CPU()
	}
	for _, p := range r.c.lbs {
		cpu, _ := procs.Stat(p.Pid())
		s.LBCPU += cpu
	}
	r.res.Series = append(r.res.Series, *s)
	return s, lines, nil
}

// progress asks every load process for its line.
func (r *runner) progress() ([]report.Line, error) {
	var lines []report.Line
	for _, g := range r.groups {
		ls, err := g.ProgressLines()
		if err != nil {
			return nil, err
		}
		lines = append(lines, ls...)
	}
	return lines, nil
}

// sampleGateway samples every live process of slot g. The slot's HTTP port answers for
// one of them (a successor shares it); the process that answered is told by
// process_start_time_seconds, and any other live one is counted from its descriptors.
func (r *runner) sampleGateway(g *gateway, t float64) []GwSample {
	var sc *scrape
	var answeredBy float64
	if g.metrics {
		if m, err := prom.Scrape(r.ctx, scrapeClient, "http://"+g.http+"/metrics"); err == nil {
			answeredBy = m.Sum("process_start_time_seconds")
			sc = &scrape{t: t, conns: m.Sum("crease_connections"), lag: m.Buckets("crease_loop_lag_seconds"),
				fanout: m.Buckets("crease_fanout_latency_seconds"), bus: m.Buckets("crease_bus_latency_seconds")}
		}
	}
	var out []GwSample
	for _, gp := range g.procs {
		if !gp.Alive() {
			if gp.exitedT == 0 {
				gp.exitedT = t
			}
			continue
		}
		cpu, rss := procs.Stat(gp.Pid())
		gs := GwSample{Label: gp.label, CPU: cpu, RSS: rss, LagP99: nan(), FanoutP99: nan(), BusP99: nan()}
		if sc != nil && math.Abs(answeredBy-gp.start) < 1 {
			gp.win = append(gp.win, *sc)
			if len(gp.win) > windowTicks+1 {
				gp.win = gp.win[1:]
			}
			if gp.first == nil {
				gp.first = sc
			}
			gp.last = sc
			old := gp.win[0]
			gs.Conns = sc.conns
			gs.LagP99 = quantileMS(prom.Diff(sc.lag, old.lag), 0.99)
			gs.FanoutP99 = quantileMS(prom.Diff(sc.fanout, old.fanout), 0.99)
			gs.BusP99 = quantileMS(prom.Diff(sc.bus, old.bus), 0.99)
		} else if n := procs.FDs(gp.Pid()); n >= 0 {
			gs.Conns, gs.FromFDs = float64(max(n-gp.baseFDs, 0)), true
		}
		out = append(out, gs)
	}
	return out
}

// quantileMS is the bucket bound holding quantile q, in ms; NaN without observations,
// +Inf past the last bucket.
func quantileMS(b map[float64]float64, q float64) jsonFloat {
	v, ok := prom.Quantile(b, q)
	if !ok {
		return nan()
	}
	return jsonFloat(v * 1000)
}
