package prom

import (
	"math"
	"strings"
	"testing"
)

// The cumulative buckets of crease_loop_lag_seconds over two loops (promtext's test
// reads them from a page).
var lag = map[float64]float64{0.001: 140, 0.01: 199, Inf: 200}

func TestParseSkipsWhatItCannotRead(t *testing.T) {
	s, err := Parse(strings.NewReader("crease_x{} not-a-number\ncrease_connections 7\n"))
	if err != nil || len(s) != 1 || s.Sum("crease_connections") != 7 {
		t.Fatalf("%v %v, want the bad line skipped", s, err)
	}
}

func TestQuantiles(t *testing.T) {
	b := lag
	// 140 of 200 within 1 ms, 199 within 10 ms.
	if q, ok := Quantile(b, 0.7); !ok || q != 0.001 {
		t.Errorf("p70 %v %v, want the 1 ms bucket", q, ok)
	}
	if q, _ := Quantile(b, 0.75); q != 0.01 {
		t.Errorf("p75 %v, want the 10 ms bucket", q)
	}
	if _, ok := Quantile(map[float64]float64{}, 0.5); ok {
		t.Error("a quantile of no observations")
	}
	if q, _ := Quantile(b, 0.999); !math.IsInf(q, 1) {
		t.Errorf("p99.9 %v, want +Inf", q)
	}
	if sh := Share(b, 0.005); sh != 0.7 {
		t.Errorf("share within 5 ms %v, want 0.7", sh)
	}
	// A restarted process counts from zero.
	after := map[float64]float64{0.001: 3, Inf: 4}
	if d := Diff(after, b); d[Inf] != 4 {
		t.Errorf("diff after a restart %v", d)
	}
	if d := Diff(b, map[float64]float64{0.001: 40, Inf: 100}); d[0.001] != 100 || d[Inf] != 100 {
		t.Errorf("diff %v", d)
	}
}
