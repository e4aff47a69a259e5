package servertest

import (
	"bytes"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"crease/internal/promtext"
)

// Samples is one reading of a Prometheus text page (promtext.Samples): every series,
// as the text format writes it, and its value, with Sum, Has and Family.
type Samples = promtext.Samples

// metricsClient has a timeout, so that a gateway that stopped answering fails the test
// instead of hanging it.
var metricsClient = &http.Client{Timeout: 10 * time.Second}

// Scrape reads the /metrics page under httpBase (HTTPURL of a gateway, or the base URL
// of any process serving /metrics).
func Scrape(t testing.TB, httpBase string) Samples {
	t.Helper()
	return ScrapeURL(t, metricsClient, httpBase+"/metrics")
}

// ScrapeURL reads the Prometheus text page at url with hc, which may hold a kept-alive
// connection (a test that counts the gateway's open connections wants that).
func ScrapeURL(t testing.TB, hc *http.Client, url string) Samples {
	t.Helper()
	a := Fetch(t, hc, url)
	if a.Status != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d", url, a.Status)
	}
	s, err := promtext.Parse(bytes.NewReader(a.Body), false)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return s
}

// Metric reads one series of the /metrics page under httpBase, such as
// `crease_handshakes_total{result="ok"}`; 0 when absent.
func Metric(t testing.TB, httpBase, series string) float64 {
	t.Helper()
	return Scrape(t, httpBase)[series]
}

// Gather reads g (a gateway's Options.Gatherer) without going through HTTP, for tests
// that poll a metric in a tight loop; the series are keyed as Scrape keys them.
func Gather(t testing.TB, g prometheus.Gatherer) Samples {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	out := Samples{}
	for _, f := range fams {
		name := f.GetName()
		for _, m := range f.GetMetric() {
			labels := m.GetLabel()
			switch {
			case m.Counter != nil:
				out[series(name, labels)] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[series(name, labels)] = m.Gauge.GetValue()
			case m.Untyped != nil:
				out[series(name, labels)] = m.Untyped.GetValue()
			case m.Histogram != nil:
				h := m.Histogram
				for _, b := range h.GetBucket() {
					out[series(name+"_bucket", labels, "le", formatFloat(b.GetUpperBound()))] = float64(b.GetCumulativeCount())
				}
				out[series(name+"_bucket", labels, "le", "+Inf")] = float64(h.GetSampleCount())
				out[series(name+"_sum", labels)] = h.GetSampleSum()
				out[series(name+"_count", labels)] = float64(h.GetSampleCount())
			case m.Summary != nil:
				sm := m.Summary
				for _, q := range sm.GetQuantile() {
					out[series(name, labels, "quantile", formatFloat(q.GetQuantile()))] = q.GetValue()
				}
				out[series(name+"_sum", labels)] = sm.GetSampleSum()
				out[series(name+"_count", labels)] = float64(sm.GetSampleCount())
			}
		}
	}
	return out
}

// series writes a series name as the text format does: name{label="value",...}, the
// labels in their order, then extra (a name and a value), values escaped.
func series(name string, labels []*dto.LabelPair, extra ...string) string {
	if len(labels) == 0 && len(extra) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	sep := ""
	pair := func(k, v string) {
		b.WriteString(sep)
		b.WriteString(k)
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(v))
		b.WriteByte('"')
		sep = ","
	}
	for _, l := range labels {
		pair(l.GetName(), l.GetValue())
	}
	for i := 0; i+1 < len(extra); i += 2 {
		pair(extra[i], extra[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, +1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
