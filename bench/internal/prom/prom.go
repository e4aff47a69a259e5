// Package prom reads the Prometheus text format of a /metrics page: sums of series,
// cumulative histogram buckets, and quantiles as the bucket bound that holds them.
// Only what the benchmarks need: no exemplars, no escaping inside label values.
package prom

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"crease/internal/promtext"
)

// Inf is the bound used for the +Inf bucket.
var Inf = promtext.Inf

// Samples maps each series as written ("name{label=\"v\",...}") to its value, with Sum
// and Buckets (promtext.Samples).
type Samples = promtext.Samples

// Scrape GETs url (a /metrics page) and parses it.
func Scrape(ctx context.Context, client *http.Client, url string) (Samples, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return Parse(resp.Body)
}

// Get scrapes url with a timeout of its own.
func Get(url string, timeout time.Duration) (Samples, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Scrape(ctx, http.DefaultClient, url)
}

// Parse reads the text format, skipping a line it cannot read.
func Parse(r io.Reader) (Samples, error) { return promtext.Parse(r, true) }

// Diff is after − before bucket by bucket: the observations between two scrapes. A
// process that restarted (after below before) counts from zero.
func Diff(after, before map[float64]float64) map[float64]float64 {
	out := make(map[float64]float64, len(after))
	reset := false
	for le, v := range after {
		if v < before[le] {
			reset = true
		}
	}
	for le, v := range after {
		if reset {
			out[le] = v
		} else {
			out[le] = v - before[le]
		}
	}
	return out
}

// Add adds b into a (allocating a if nil) and returns a.
func Add(a, b map[float64]float64) map[float64]float64 {
	if a == nil {
		a = map[float64]float64{}
	}
	for le, v := range b {
		a[le] += v
	}
	return a
}

// Count is the number of observations (the +Inf bucket).
func Count(b map[float64]float64) float64 { return b[Inf] }

// Quantile returns the upper bound of the bucket that holds quantile q (0..1) of the
// cumulative buckets b, +Inf when it is past the last finite bound, and ok false when
// b has no observations.
func Quantile(b map[float64]float64, q float64) (bound float64, ok bool) {
	total := b[Inf]
	if total <= 0 {
		return 0, false
	}
	les := make([]float64, 0, len(b))
	for le := range b {
		les = append(les, le)
	}
	sort.Float64s(les)
	for _, le := range les {
		if b[le] >= q*total {
			return le, true
		}
	}
	return Inf, true
}

// Share is the fraction of observations at or under bound (the largest bucket bound not
// above it).
func Share(b map[float64]float64, bound float64) float64 {
	total := b[Inf]
	if total <= 0 {
		return 0
	}
	v := 0.0
	best := -1.0
	for le, c := range b {
		if le <= bound+1e-12 && le > best {
			best, v = le, c
		}
	}
	return v / total
}
