package promtext

import (
	"strings"
	"testing"
)

const counters = `# HELP crease_x_total x
# TYPE crease_x_total counter
crease_x_total{loop="0",reason="slow"} 2
crease_x_total{loop="1",reason="slow"} 3
crease_x_total{loop="1",reason="gap"} 5
crease_x_total_extra 100
crease_y 1.5e+06
`

const histogram = `# HELP crease_loop_lag_seconds lag
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

func parse(t *testing.T, page string) Samples {
	t.Helper()
	s, err := Parse(strings.NewReader(page), false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSumByLabel(t *testing.T) {
	for _, c := range []struct {
		page, name string
		want       []string
		sum        float64
	}{
		{counters, "crease_x_total", nil, 10}, // the whole family, not crease_x_total_extra
		{counters, "crease_x_total", []string{`reason="slow"`}, 5},
		{counters, "crease_x_total", []string{`loop="1"`, `reason="gap"`}, 5},
		{counters, "crease_x_total", []string{`reason="slo"`}, 0}, // a label is matched whole
		{histogram, "crease_connections", nil, 12},
		{histogram, "crease_connections", []string{`loop="1"`}, 5},
		{histogram, "process_start_time_seconds", nil, 1.7e9},
		{histogram, "crease_loop_lag_seconds_bucket", []string{`loop="1"`, `le="+Inf"`}, 100},
		{counters, `crease_x_total{loop="1",reason="gap"}`, nil, 5}, // one series, named whole
		{counters, `crease_x_total{loop="1",reason="gap"}`, []string{`reason="slow"`}, 0},
	} {
		if got := parse(t, c.page).Sum(c.name, c.want...); got != c.sum {
			t.Errorf("Sum(%s, %q) = %v, want %v", c.name, c.want, got, c.sum)
		}
	}
}

func TestParse(t *testing.T) {
	s := parse(t, counters)
	if got := s[`crease_y`]; got != 1.5e6 || !s.Has("crease_y") || s.Has("crease_z") {
		t.Errorf("crease_y %v", got)
	}
	if f := s.Family("crease_x_total"); len(f) != 3 || f[`crease_x_total{loop="1",reason="gap"}`] != 5 {
		t.Errorf("family %v", f)
	}
	if !s.Has(`crease_x_total{loop="0",reason="slow"}`) || s.Has(`crease_x_total{loop="0"}`) {
		t.Error("Has of a whole series")
	}
	for _, bad := range []string{"crease_x_total{} not-a-number\n", "crease_x_total\n"} {
		if _, err := Parse(strings.NewReader(bad), false); err == nil {
			t.Errorf("%q parsed", bad)
		}
		if s, err := Parse(strings.NewReader(bad+"crease_y 1\n"), true); err != nil || len(s) != 1 || s["crease_y"] != 1 {
			t.Errorf("lenient %q: %v %v, want the bad line skipped", bad, s, err)
		}
	}
}

func TestBuckets(t *testing.T) {
	b := parse(t, histogram).Buckets("crease_loop_lag_seconds")
	if len(b) != 3 || b[0.001] != 140 || b[0.01] != 199 || b[Inf] != 200 {
		t.Errorf("buckets %v", b)
	}
	if b := parse(t, histogram).Buckets("crease_loop_lag_seconds", `loop="1"`); b[0.001] != 50 || b[Inf] != 100 {
		t.Errorf("buckets of loop 1 %v", b)
	}
}
