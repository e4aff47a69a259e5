// Package promtext reads the Prometheus text format of a /metrics page into its series
// and values, and sums them: by family and labels, and the cumulative buckets of a
// histogram. It serves the tests' readings of a gateway (server/servertest) and the
// benchmarks' scrapes (bench/internal/prom) alike. Only what those need: no exemplars,
// no timestamps, no escaping inside label values.
package promtext

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Inf is the bound used for the +Inf bucket.
var Inf = math.Inf(1)

// Samples is one reading of a page: every series, as the text format writes it (name or
// name{label="v",...}), and its value. Histograms' _bucket, _sum and _count series are
// series like any other.
type Samples map[string]float64

// Parse reads the text format: empty and comment lines are skipped, every other line is
// a series and its value. A line that is not is an error, or, when lenient, skipped.
func Parse(r io.Reader, lenient bool) (Samples, error) {
	out := Samples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			if lenient {
				continue
			}
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			if lenient {
				continue
			}
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// split returns a series' name and its label text (without braces).
func split(series string) (name, labels string) {
	i := strings.IndexByte(series, '{')
	if i < 0 {
		return series, ""
	}
	return series[:i], strings.TrimSuffix(series[i+1:], "}")
}

// matches reports whether labels holds every one of want, each written as the text
// format does (`loop="0"`).
func matches(labels string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(","+labels+",", ","+w+",") {
			return false
		}
	}
	return true
}

// inFamily reports whether series is one of name: name itself (which may be a whole
// series, labels and all) or name with labels.
func inFamily(series, name string) bool {
	return series == name || strings.HasPrefix(series, name+"{")
}

// Family returns the series of the metric name (exactly that name, any labels; or the
// one series name writes out).
func (s Samples) Family(name string) Samples {
	out := Samples{}
	for k, v := range s {
		if inFamily(k, name) {
			out[k] = v
		}
	}
	return out
}

// Has reports whether any series of name was read.
func (s Samples) Has(name string) bool { return len(s.Family(name)) > 0 }

// Sum adds every series of Family(name) whose labels include all of want
// (`reason="slow"`): with none, the whole family.
func (s Samples) Sum(name string, want ...string) float64 {
	t := 0.0
	for series, v := range s {
		if _, l := split(series); inFamily(series, name) && matches(l, want) {
			t += v
		}
	}
	return t
}

// Buckets returns the cumulative counts of histogram name (its _bucket series) by
// upper bound, summed over the other labels (those of want only, if any).
func (s Samples) Buckets(name string, want ...string) map[float64]float64 {
	out := map[float64]float64{}
	for series, v := range s {
		n, l := split(series)
		if n != name+"_bucket" || !matches(l, want) {
			continue
		}
		i := strings.Index(l, `le="`)
		if i < 0 {
			continue
		}
		rest := l[i+4:]
		j := strings.IndexByte(rest, '"')
		if j < 0 {
			continue
		}
		le := Inf
		if rest[:j] != "+Inf" {
			var err error
			if le, err = strconv.ParseFloat(rest[:j], 64); err != nil {
				continue
			}
		}
		out[le] += v
	}
	return out
}
