package main

import (
	"fmt"
	"slices"

	"crease/bench/internal/report"
)

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func ratio(x, base float64) string {
	if base == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", x/base)
}

func verified(n, of int, err error) string {
	if err != nil {
		return fmt.Sprintf("%d/%d (%v)", n, of, err)
	}
	return fmt.Sprintf("%d/%d", n, of)
}

func printAirplane(rs []airplaneResult, outage fmt.Stringer) {
	fmt.Printf("### 2G clients after %v of airplane mode\n\n", outage)
	fmt.Println("Per client, from the network's return until it holds the state of that moment (medians; ratio to resync).")
	fmt.Println()
	fmt.Print(report.TableHead("mode", "bytes", "requests", "time to converge (median / max)", "snapshots", "recovered", "one-delta replays", "gateway CPU-s", "final state"))
	var base airplaneResult
	for i, r := range rs {
		if i == 0 {
			base = r
		}
		conv := slices.Clone(r.converge)
		slices.Sort(conv)
		mx := 0.0
		if len(conv) > 0 {
			mx = conv[len(conv)-1]
		}
		fmt.Printf("| %s | %.0f (%s) | %.0f (%s) | %.2f s (%s) / %.2f s | %d | %.0f | %.0f | %.3f | %s |\n", r.mode,
			median(r.bytes), ratio(median(r.bytes), median(base.bytes)), median(r.requests), ratio(median(r.requests), median(base.requests)),
			median(r.converge), ratio(median(r.converge), median(base.converge)), mx, r.snapshots, r.recovered, r.composed, r.cpu,
			verified(r.verified, r.clients, r.err))
	}
	fmt.Println()
}

func printSlow(rs []slowResult) {
	fmt.Println("### Fast clients while 10% read slowly")
	fmt.Println()
	fmt.Println("90 raw readers as fast as they can (their publish-to-receive latency), 10 Go clients at 3 KB/s (final state checked), 30 s of a 20 deltas/s stream and its commentary.")
	fmt.Println()
	fmt.Print(report.TableHead("slow clients", "fast p50 / p99 / p99.9", "slow clients' snapshots", "bytes per slow client", "slow clients final after", "resyncs (slow)", "catch-up deltas", "gateway CPU-s per 1,000 deltas", "final state"))
	for _, r := range rs {
		per := 0.0
		if r.deltas > 0 {
			per = r.cpu / r.deltas * 1000
		}
		fmt.Printf("| %s | %.1f / %.1f / %.1f ms | %d | %.0f | %.1f s | %.0f | %.0f | %.3f | %s |\n", r.mode, r.p50, r.p99, r.p999,
			r.slowSnapshots, r.slowBytes, r.slowConverge, r.resyncs, r.composed, per, verified(r.verified, r.slow, r.err))
	}
	fmt.Println()
}

func printStorm(rs []stormResult) {
	fmt.Println("### Reconnect storm after a drain")
	fmt.Println()
	fmt.Println("Clients of two matches on gateway A; B starts on the same ports (--reuse-port) and A drains over 5 s.")
	fmt.Println()
	fmt.Print(report.TableHead("mode", "clients", "snapshot requests", "snapshot bytes", "history reads", "recovered", "all current after", "B's CPU-s", "final state"))
	for _, r := range rs {
		fmt.Printf("| %s | %d | %d | %d | %.0f | %.0f | %.1f s | %.3f | %s |\n", r.mode, r.clients, r.snapshots, r.snapshotBytes,
			r.reads, r.recovered, r.back, r.cpu, verified(r.verified, r.clients, r.err))
	}
	fmt.Println()
}
