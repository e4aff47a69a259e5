package servertest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"crease/server"
)

func TestParseSamplesSumsByLabel(t *testing.T) {
	s, err := ParseSamples(`# HELP crease_x_total x
# TYPE crease_x_total counter
crease_x_total{loop="0",reason="slow"} 2
crease_x_total{loop="1",reason="slow"} 3
crease_x_total{loop="1",reason="gap"} 5
crease_x_total_extra 100
crease_y 1.5e+06
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sum("crease_x_total"); got != 10 {
		t.Errorf("whole family %v, want 10", got)
	}
	if got := s.Sum("crease_x_total", `reason="slow"`); got != 5 {
		t.Errorf("reason=slow %v, want 5", got)
	}
	if got := s.Sum("crease_x_total", `loop="1"`, `reason="gap"`); got != 5 {
		t.Errorf("loop=1 reason=gap %v, want 5", got)
	}
	if got := s[`crease_y`]; got != 1.5e6 || !s.Has("crease_y") || s.Has("crease_z") {
		t.Errorf("crease_y %v", got)
	}
	if _, err := ParseSamples("crease_x_total{} not-a-number\n"); err == nil {
		t.Error("a line without a number parsed")
	}
}

// Gather keys every series as the /metrics page writes it: the same set of series, and
// the same values for those that do not move by themselves.
func TestGatherMatchesScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := Run(t, server.Options{Loops: 1, Registerer: reg, Gatherer: reg})
	scraped, gathered := Scrape(t, HTTPURL(s)), Gather(t, reg)
	if len(gathered) == 0 {
		t.Fatal("nothing gathered")
	}
	for k := range scraped {
		if _, ok := gathered[k]; !ok {
			t.Errorf("scraped %s, not gathered", k)
		}
	}
	for k := range gathered {
		if _, ok := scraped[k]; !ok {
			t.Errorf("gathered %s, not scraped", k)
		}
	}
	for _, k := range []string{`crease_connections{loop="0"}`, `crease_disconnects_total{reason="drain"}`} {
		if _, ok := scraped[k]; !ok || scraped[k] != gathered[k] {
			t.Errorf("%s: scraped %v, gathered %v", k, scraped[k], gathered[k])
		}
	}
}
