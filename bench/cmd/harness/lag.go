package main

import (
	"math"
	"time"

	"crease/bench/internal/prom"
)

// lagStats summarizes crease_loop_lag_seconds over one run: the probes that ran during
// it and the share of them within each bound.
type lagStats struct {
	Probes              int64
	LE05, LE1, LE2, LE5 float64 // share of probes within 0.5, 1, 2, 5 ms
	P99MS               float64 // upper bound of the bucket holding the 99th percentile, ms
	P99Above            bool    // the 99th percentile is past the last bucket
}

// scrapeLag returns the cumulative bucket counts of crease_loop_lag_seconds summed
// over the loops, by upper bound; nil if unreachable.
func scrapeLag(httpAddr string) map[float64]float64 {
	s, err := prom.Get("http://"+httpAddr+"/metrics", 5*time.Second)
	if err != nil {
		return nil
	}
	return s.Buckets("crease_loop_lag_seconds")
}

// lagBetween is what the probes between two scrapes saw.
func lagBetween(before, after map[float64]float64) *lagStats {
	if after == nil {
		return nil
	}
	d := prom.Diff(after, before)
	total := prom.Count(d)
	if total <= 0 {
		return nil
	}
	st := &lagStats{Probes: int64(total)}
	st.LE05, st.LE1, st.LE2, st.LE5 = prom.Share(d, 0.0005), prom.Share(d, 0.001), prom.Share(d, 0.002), prom.Share(d, 0.005)
	if p99, _ := prom.Quantile(d, 0.99); math.IsInf(p99, 1) {
		st.P99Above = true
	} else {
		st.P99MS = p99 * 1000
	}
	return st
}
