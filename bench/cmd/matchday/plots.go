package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

type plotFile struct{ file, what string }

// plotResult draws the seed's graph for one run: connections per gateway, loop lag p99
// per gateway, and the latencies, over time.
func plotResult(r *Result, dir string) ([]plotFile, error) {
	base := r.Server + "-" + r.Variant
	var out []plotFile
	for _, p := range []struct {
		suffix, what string
		draw         func(*Result) (*plot.Plot, error)
	}{
		{"connections", "connections per gateway", plotConns},
		{"looplag", "loop lag p99 per gateway", plotLag},
		{"latency", "fan-out latency", plotLatency},
	} {
		pl, err := p.draw(r)
		if err != nil {
			return out, fmt.Errorf("%s: %v", p.what, err)
		}
		if pl == nil {
			continue
		}
		file := base + "-" + p.suffix + ".png"
		if err := pl.Save(8*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, file)); err != nil {
			return out, err
		}
		out = append(out, plotFile{file, p.what})
	}
	return out, nil
}

// perProcess collects one value per gateway process over time.
func perProcess(r *Result, v func(GwSample) float64) (map[string]plotter.XYs, []string) {
	series := map[string]plotter.XYs{}
	for _, s := range r.Series {
		for _, g := range s.Gateways {
			y := v(g)
			if math.IsNaN(y) || math.IsInf(y, 0) {
				continue
			}
			series[g.Label] = append(series[g.Label], plotter.XY{X: s.T, Y: y})
		}
	}
	labels := make([]string, 0, len(series))
	for l := range series {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	return series, labels
}

func newPlot(r *Result, title, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s (%s %s, %d viewers)", title, r.Server, r.Variant, r.Audience)
	p.X.Label.Text = "seconds since the gateways started"
	p.Y.Label.Text = y
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	return p
}

func addLines(p *plot.Plot, series map[string]plotter.XYs, labels []string) error {
	for i, l := range labels {
		line, err := plotter.NewLine(series[l])
		if err != nil {
			return err
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.2)
		p.Add(line)
		p.Legend.Add(l, line)
	}
	return nil
}

// target draws a dashed horizontal line at y.
func target(p *plot.Plot, r *Result, y float64, label string) error {
	if len(r.Series) == 0 {
		return nil
	}
	line, err := plotter.NewLine(plotter.XYs{{X: 0, Y: y}, {X: r.Series[len(r.Series)-1].T, Y: y}})
	if err != nil {
		return err
	}
	line.Color = color.RGBA{R: 200, A: 255}
	line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(line)
	p.Legend.Add(label, line)
	return nil
}

func plotConns(r *Result) (*plot.Plot, error) {
	p := newPlot(r, "Connections per gateway", "open connections")
	series, labels := perProcess(r, func(g GwSample) float64 { return g.Conns })
	if len(labels) == 0 {
		return nil, nil
	}
	if err := addLines(p, series, labels); err != nil {
		return nil, err
	}
	var total plotter.XYs
	for _, s := range r.Series {
		total = append(total, plotter.XY{X: s.T, Y: float64(s.Open) / float64(r.Gateways)})
	}
	line, err := plotter.NewLine(total)
	if err != nil {
		return nil, err
	}
	line.Color = color.Gray{Y: 120}
	line.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	p.Add(line)
	p.Legend.Add("audience ÷ gateways", line)
	return p, target(p, r, 25000, "target: 25,000")
}

func plotLag(r *Result) (*plot.Plot, error) {
	series, labels := perProcess(r, func(g GwSample) float64 { return float64(g.LagP99) })
	if len(labels) == 0 {
		return nil, nil // a baseline: no loop-lag metric
	}
	p := newPlot(r, "Loop lag p99 per gateway (5-tick windows)", "ms (bucket bound, log)")
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	floorAt(series, 0.05)
	if err := addLines(p, series, labels); err != nil {
		return nil, err
	}
	return p, target(p, r, 50, "target: 50 ms")
}

func plotLatency(r *Result) (*plot.Plot, error) {
	p := newPlot(r, "Fan-out latency", "ms (log)")
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	series := map[string]plotter.XYs{}
	for _, s := range r.Series {
		add := func(name string, v float64) {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				series[name] = append(series[name], plotter.XY{X: s.T, Y: v})
			}
		}
		add("publish → client p50", float64(s.E2EP50))
		add("publish → client p99", float64(s.E2EP99))
		bus, fan := math.NaN(), math.NaN()
		for _, g := range s.Gateways {
			bus, fan = nanMax(bus, float64(g.BusP99)), nanMax(fan, float64(g.FanoutP99))
		}
		add("PUB → last gateway p99", bus)
		add("gateway fan-out p99 (slow readers too)", fan)
	}
	var labels []string
	for _, l := range []string{"publish → client p50", "publish → client p99", "PUB → last gateway p99", "gateway fan-out p99 (slow readers too)"} {
		if len(series[l]) > 0 {
			labels = append(labels, l)
		}
	}
	if len(labels) == 0 {
		return nil, nil
	}
	floorAt(series, 0.05)
	if err := addLines(p, series, labels); err != nil {
		return nil, err
	}
	return p, target(p, r, 100, "target: 100 ms")
}

// floorAt raises values under min to min, for a log scale.
func floorAt(series map[string]plotter.XYs, min float64) {
	for _, xys := range series {
		for i := range xys {
			xys[i].Y = math.Max(xys[i].Y, min)
		}
	}
}
