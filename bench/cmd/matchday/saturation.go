package main

import (
	"fmt"
	"strings"

	"crease/bench/internal/report"
)

// floorPerDelivery is the kernel's cost of one delivery on this machine's loopback: a
// ~200-byte frame written to one socket and read from it by an epoll reader, nothing
// else (shared/NOTES-this-machine.md, "The cost of a delivery", one frame per write).
var floorPerDelivery = [2]float64{12e-6, 14e-6}

// writeSaturation says, for every run that reached a cost window at its peak, how much
// of the two cores the frames it delivered there need at the kernel's floor, against
// what the servers and the load took: whether the figures of the three numbers are the
// gateways' or the box's.
func writeSaturation(b *strings.Builder, results []*Result) {
	w := func(f string, a ...any) { fmt.Fprintf(b, f, a...) }
	var rows []string
	for _, r := range results {
		if len(r.Points) == 0 {
			continue
		}
		p := r.Points[len(r.Points)-1]
		if p.Conns < int64(r.Audience)*9/10 || p.WindowS <= 0 {
			continue
		}
		fps := float64(p.Delivered) / p.WindowS
		rows = append(rows, fmt.Sprintf("| %s | %d | %.0f | %.2f-%.2f | %.2f | %.2f | %s | %.2f |",
			runName(r), p.Conns, fps, fps*floorPerDelivery[0], fps*floorPerDelivery[1],
			p.ServerCPU/p.WindowS, p.LoadCPU/p.WindowS, lbCPU(r, p), (p.ServerCPU+p.LoadCPU+p.LBCPU)/p.WindowS))
	}
	if len(rows) == 0 {
		return
	}
	w("### What the two cores can hold\n\n")
	w("In the cost window at the peak: the frames delivered per second, the cores that many deliveries take at the kernel's floor alone " +
		"(12-14 µs each here for the write and the read of one frame on loopback, shared/NOTES-this-machine.md), and the cores the servers, " +
		"the load processes and HAProxy used (CPU-s per second; Redis, the publisher and the sampling come on top). Where the sum nears 2, " +
		"the box is saturated: connections open late, deltas queue in the run queue, and latencies in seconds are the box's, not a gateway's loop.\n\n")
	w("%s", report.TableHead("run", "connections", "frames/s", "cores at the floor", "gateways", "load processes", "HAProxy", "all three"))
	w("%s\n\n", strings.Join(rows, "\n"))
}
