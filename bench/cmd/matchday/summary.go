package main

import (
	"math"

	"crease/bench/internal/procs"
	"crease/bench/internal/prom"
)

// summarise fills the per-process figures of the run from each process's first and
// last scrape and from the series.
func (r *runner) summarise() {
	for _, g := range r.c.gws {
		for i, gp := range g.procs {
			ps := ProcSummary{Label: gp.label, LagP99: nan(), FanoutP99: nan(), BusP99: nan(), Restarts: i, UntilS: gp.exitedT}
			for _, s := range r.res.Series {
				for _, gs := range s.Gateways {
					if gs.Label != gp.label {
						continue
					}
					if ps.FromStartS == 0 {
						ps.FromStartS = s.T
					}
					if gs.Conns > ps.PeakConns {
						ps.PeakConns = gs.Conns
						ps.PeakConnsFromFDs = 0
						if gs.FromFDs {
							ps.PeakConnsFromFDs = 1
						}
					}
					ps.CPU = gs.CPU
					ps.PeakRSS = max(ps.PeakRSS, gs.RSS)
				}
			}
			if gp.first != nil && gp.last != nil {
				// The first scrape came before any connection: the difference is the run.
				lag := prom.Diff(gp.last.lag, gp.first.lag)
				bus := prom.Diff(gp.last.bus, gp.first.bus)
				fan := prom.Diff(gp.last.fanout, gp.first.fanout)
				ps.LagP99, ps.BusP99, ps.FanoutP99 = quantileMS(lag, 0.99), quantileMS(bus, 0.99), quantileMS(fan, 0.99)
				ps.LagProbes, ps.BusMessages = prom.Count(lag), prom.Count(bus)
				ps.LagLE2, ps.LagLE50, ps.BusLE100 = prom.Share(lag, 0.002), prom.Share(lag, 0.05), prom.Share(bus, 0.1)
			}
			if gp.Alive() {
				ps.PeakRSS = max(ps.PeakRSS, procs.PeakRSS(gp.Pid()))
			}
			r.res.Procs = append(r.res.Procs, ps)
		}
	}
}

// figures are the run's headline numbers, derived from a Result for the table.
type figures struct {
	peakTotal       float64
	peakPerGateway  float64
	lagP99Max       float64 // ms: the worst gateway process's p99 over the run
	lagP99Peak      float64 // ms: the worst 5-tick p99 of any gateway at the peak
	busP99Max       float64 // ms: PUB to the last gateway (the worst process's p99)
	fanoutP99Max    float64
	serverCPU       float64
	peakRSSGateway  int64
	deliveredPerSec float64
}

func derive(r *Result) figures {
	var f figures
	f.lagP99Max, f.busP99Max, f.fanoutP99Max, f.lagP99Peak = math.NaN(), math.NaN(), math.NaN(), math.NaN()
	for _, p := range r.Procs {
		f.peakPerGateway = math.Max(f.peakPerGateway, p.PeakConns)
		f.lagP99Max = nanMax(f.lagP99Max, float64(p.LagP99))
		f.busP99Max = nanMax(f.busP99Max, float64(p.BusP99))
		f.fanoutP99Max = nanMax(f.fanoutP99Max, float64(p.FanoutP99))
		f.serverCPU += p.CPU
		f.peakRSSGateway = max(f.peakRSSGateway, p.PeakRSS)
	}
	peak := "at " + itoa(r.Audience)
	for _, s := range r.Series {
		f.peakTotal = math.Max(f.peakTotal, float64(s.Open))
		if s.Phase != peak {
			continue
		}
		for _, g := range s.Gateways {
			f.lagP99Peak = nanMax(f.lagP99Peak, float64(g.LagP99))
		}
	}
	if n := len(r.Points); n > 0 {
		p := r.Points[n-1]
		f.deliveredPerSec = float64(p.Delivered) / p.WindowS
	}
	return f
}

func nanMax(a, b float64) float64 {
	switch {
	case math.IsNaN(a):
		return b
	case math.IsNaN(b):
		return a
	}
	return math.Max(a, b)
}
