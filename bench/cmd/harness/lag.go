package main

import (
	"bufio"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
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
// over the loops, by upper bound (+Inf as a large number); nil if unreachable.
func scrapeLag(httpAddr string) map[float64]float64 {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[float64]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		ln := sc.Text()
		if !strings.HasPrefix(ln, "crease_loop_lag_seconds_bucket{") {
			continue
		}
		i := strings.Index(ln, `le="`)
		if i < 0 {
			continue
		}
		rest := ln[i+4:]
		j := strings.IndexByte(rest, '"')
		sp := strings.LastIndexByte(ln, ' ')
		if j < 0 || sp < 0 {
			continue
		}
		le := 1e9
		if rest[:j] != "+Inf" {
			if le, err = strconv.ParseFloat(rest[:j], 64); err != nil {
				continue
			}
		}
		v, err := strconv.ParseFloat(ln[sp+1:], 64)
		if err != nil {
			continue
		}
		out[le] += v
	}
	return out
}

// lagBetween is what the probes between two scrapes saw.
func lagBetween(before, after map[float64]float64) *lagStats {
	if after == nil {
		return nil
	}
	var les []float64
	for le := range after {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 {
		return nil
	}
	cum := func(le float64) float64 { return after[le] - before[le] }
	total := cum(les[len(les)-1])
	if total <= 0 {
		return nil
	}
	st := &lagStats{Probes: int64(total)}
	share := func(bound float64) float64 {
		// The largest bucket bound not above bound.
		v := 0.0
		for _, le := range les {
			if le <= bound+1e-12 {
				v = cum(le)
			}
		}
		return v / total
	}
	st.LE05, st.LE1, st.LE2, st.LE5 = share(0.0005), share(0.001), share(0.002), share(0.005)
	st.P99Above = true
	for _, le := range les {
		if cum(le) >= 0.99*total {
			if le < 1e9 {
				st.P99MS, st.P99Above = le*1000, false
			}
			break
		}
	}
	return st
}
