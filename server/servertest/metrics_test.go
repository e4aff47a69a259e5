package servertest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"crease/server"
)

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
