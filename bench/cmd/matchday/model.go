package main

import (
	"fmt"
	"math"
	"strings"

	"crease/bench/internal/report"
)

// The capacity model: fitted to the cost windows of crease's reuseport run, checked
// against each of them, and extrapolated to bigger hosts. It is a model, and says so.

// model is CPU-s per second = fixed + perFrame × frames per second, and memory = a
// constant + per connection (user, and kernel for one end). At one pace, frames grow
// with the connections, so a cost per connection (heartbeats, timers) cannot be told
// from the cost per frame and is part of it.
type model struct {
	fixed, perFrame       float64 // CPU-s per second, CPU-s per frame
	userPerConn, kernPerC float64 // bytes
	framesPerViewer       float64 // frames per viewer per second at the run's pace
}

// fitModel fits the model by least squares over the points.
func fitModel(points []CostPoint) (model, bool) {
	if len(points) < 2 {
		return model{}, false
	}
	var m model
	for _, p := range points {
		m.framesPerViewer += float64(p.Delivered) / p.WindowS / float64(max(p.Conns, 1))
	}
	m.framesPerViewer /= float64(len(points))
	m.perFrame, m.fixed = line(points, func(p CostPoint) float64 { return float64(p.Delivered) / p.WindowS },
		func(p CostPoint) float64 { return p.ServerCPU / p.WindowS })
	conns := func(p CostPoint) float64 { return float64(p.Conns) }
	m.userPerConn, _ = line(points, conns, func(p CostPoint) float64 { return float64(p.ServerRSS) })
	kern, _ := line(points, conns, func(p CostPoint) float64 { return float64(p.SockMem + p.Slab) })
	m.kernPerC = kern / 2
	return m, m.perFrame > 0
}

// line is the least-squares slope and intercept of y over x.
func line(points []CostPoint, x, y func(CostPoint) float64) (slope, intercept float64) {
	var sx, sy, sxx, sxy float64
	n := float64(len(points))
	for _, p := range points {
		sx, sy, sxx, sxy = sx+x(p), sy+y(p), sxx+x(p)*x(p), sxy+x(p)*y(p)
	}
	d := n*sxx - sx*sx
	if d <= 0 {
		return math.NaN(), math.NaN()
	}
	slope = (n*sxy - sx*sy) / d
	return slope, (sy - slope*sx) / n
}

func (m model) cpu(p CostPoint) float64 {
	return m.fixed + m.perFrame*float64(p.Delivered)/p.WindowS
}

// slope is the least-squares slope of y over connections.
func slope(points []CostPoint, y func(CostPoint) float64) float64 {
	var sx, sy, sxx, sxy float64
	n := float64(len(points))
	for _, p := range points {
		x := float64(p.Conns)
		sx, sy, sxx, sxy = sx+x, sy+y(p), sxx+x*x, sxy+x*y(p)
	}
	if d := n*sxx - sx*sx; d > 0 {
		return (n*sxy - sx*sy) / d
	}
	return math.NaN()
}

// Capacity targets of the extrapolation.
const (
	utilisation   = 0.6 // of the cores, leaving room for bursts, GC and the drain of a neighbour
	passTarget    = 0.1 // s: one frame to every connection of a host within 100 ms
	hostMemPerCPU = 4   // GiB of memory per core assumed for the hosts
)

func writeModel(b *strings.Builder, results []*Result) {
	w := func(f string, a ...any) { fmt.Fprintf(b, f, a...) }
	var r *Result
	for _, x := range results {
		if x.Server == "crease" && x.Variant == "reuseport" && len(x.Points) >= 2 {
			r = x
			break
		}
	}
	w("### Capacity model (a model, not a measurement)\n\n")
	if r == nil {
		w("Needs crease's reuseport run with at least two cost windows.\n\n")
		return
	}
	m, ok := fitModel(r.Points)
	if !ok {
		w("The cost windows of crease's reuseport run do not fit the model (no CPU per frame).\n\n")
		return
	}
	w("Fitted by least squares to the %d cost windows of crease's reuseport run: **server CPU-s per second = %.3f + %.2f µs × frames delivered per second** "+
		"(the constant is the gateways' own clock: loop ticks, GC, the bus; a cost per connection is in the per-frame cost, as frames grow with the audience at one pace), "+
		"memory **%.2f KB per connection** in the gateway and **%.2f KB** of kernel socket memory per connection for one end (half the both-ends slope). "+
		"At the run's pace a viewer receives %.2f frames per second.\n\n",
		len(r.Points), m.fixed, m.perFrame*1e6, m.userPerConn/1024, m.kernPerC/1024, m.framesPerViewer)
	w("Per core, that is %s frames per second; with a delta and a commentary event per ball, **%s viewer-balls per second per core**, "+
		"or **%s connections per core** at this pace (one ball every %.1f s) with the core %.0f%% busy.\n\n",
		kilo(1/m.perFrame), kilo(1/m.perFrame/2), kilo(utilisation/(m.perFrame*m.framesPerViewer)), 1/r.Speed, utilisation*100)
	w("Checked against each window:\n\n")
	w("%s", report.TableHead("connections", "measured CPU-s/s", "model", "error", "measured RSS growth", "model"))
	rss0 := float64(r.Points[0].ServerRSS) - m.userPerConn*float64(r.Points[0].Conns)
	for _, p := range r.Points {
		meas, pred := p.ServerCPU/p.WindowS, m.cpu(p)
		w("| %d | %.3f | %.3f | %+.0f%% | %.1f MB | %.1f MB |\n", p.Conns, meas, pred, (pred-meas)/meas*100,
			float64(p.ServerRSS-p.ServerRSS0)/(1<<20), (rss0+m.userPerConn*float64(p.Conns)-float64(p.ServerRSS0))/(1<<20))
	}
	w("\nWhat it implies, with the gateway alone on the host (here the load generator, Redis and the publisher share its two cores), %.0f%% of the cores busy at most, %d GiB of memory per core, and one frame to every connection of the host within %.0f ms at a wicket "+
		"(the frames of one ball pass over all connections, the loops in parallel):\n\n", utilisation*100, hostMemPerCPU, passTarget*1000)
	w("%s", report.TableHead("host", "viewers by CPU at this pace", fmt.Sprintf("viewers by the %.0f ms pass", passTarget*1000), "memory per 100k viewers", "viewers by memory", "viewers"))
	per100k := 100000 * (m.userPerConn + m.kernPerC)
	for _, cores := range []float64{16, 64} {
		cpuBound := utilisation * cores / (m.perFrame * m.framesPerViewer)
		passBound := passTarget * cores / m.perFrame
		memBound := hostMemPerCPU * cores * (1 << 30) * 0.8 / (m.userPerConn + m.kernPerC)
		w("| %.0f cores, %.0f GiB | %s | %s | %.0f MB | %s | **%s** |\n", cores, hostMemPerCPU*cores, kilo(cpuBound), kilo(passBound),
			per100k/(1<<20), kilo(memBound), kilo(math.Min(cpuBound, math.Min(passBound, memBound))))
	}
	w("\nThe CPU per frame was measured on loopback, where the sender's write also pays for the receive path (shared/NOTES-this-machine.md), and with the load generator contending for the same cores: on a real host the per-frame cost is lower, so the model errs on the safe side. It does not cover the handshake storm of a reconnect wave (see the storm tables) nor the descriptors (one per connection: raise `LimitNOFILE`, deploy/README.md).\n\n")
}

func kilo(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "–"
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	}
	return fmt.Sprintf("%.0fk", v/1e3)
}
