package prom

import (
	"math"
	"strings"
	"testing"
)

const page = `# HELP crease_loop_lag_seconds lag
# TYPE crease_loop_lag_seconds histogram
crease_loop_lag_seconds_bucket{loop="0",le="0.001"} 90
crease_loop_lag_seconds_bucket{loop="0",le="0.01"} 99
crease_loop_lag_seconds_bucket{loop="0",le="+Inf"} 100
crease_loop_lag_seconds_bucket{loop="1",le="0.001"} 50
crease_loop_lag_seconds_bucket{loop="1",le="0.01"} 100
crease_loop_lag_seconds_bucket{loop="1",le="+Inf"} 100
crease_connections{loop="0"} 7
crease_connections{loop="1"} 5
process_start_time_seconds 1.7e+09
`

func TestSumsBucketsAndQuantiles(t *testing.T) {
	s, err := Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sum("crease_connections"); got != 12 {
		t.Errorf("sum %v, want 12", got)
	}
	if got := s.Sum("crease_connections", `loop="1"`); got != 5 {
		t.Errorf("sum of loop 1 %v, want 5", got)
	}
	if got := s.Sum("process_start_time_seconds"); got != 1.7e9 {
		t.Errorf("start time %v", got)
	}
	b := s.Buckets("crease_loop_lag_seconds")
	if b[0.001] != 140 || b[Inf] != 200 {
		t.Fatalf("buckets %v", b)
	}
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
