package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpliceReplacesOnlyItsSection: the Match day section is replaced in place, other
// sections (the harness's, other helpers') are kept, and a report without it gets it
// before the plots.
func TestSpliceReplacesOnlyItsSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	orig := "# crease benchmarks\n\n## Idle density\n\nidle\n\n## Other helper\n\nkept\n\n## Plots\n\nplots\n"
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := splice(path, "## Match day\n\nfirst\n\n### Figures\n\nf\n\n"); err != nil {
		t.Fatal(err)
	}
	if err := splice(path, "## Match day\n\nsecond\n\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	want := "# crease benchmarks\n\n## Idle density\n\nidle\n\n## Other helper\n\nkept\n\n## Match day\n\nsecond\n\n## Plots\n\nplots\n"
	if string(b) != want {
		t.Errorf("after two splices:\n%s\nwant:\n%s", b, want)
	}
}

// TestModelFitsAndPredicts: a line through the points is found again, and the
// prediction at each point is the measurement.
func TestModelFitsAndPredicts(t *testing.T) {
	var pts []CostPoint
	for _, n := range []int64{10000, 30000, 60000, 120000} {
		frames := float64(n) * 0.67
		pts = append(pts, CostPoint{Conns: n, WindowS: 10, Delivered: int64(frames * 10),
			ServerCPU: (0.05 + 8e-6*frames) * 10, ServerRSS: 40<<20 + n*1500, SockMem: n * 4000, Slab: n * 6000})
	}
	m, ok := fitModel(pts)
	if !ok {
		t.Fatal("no fit")
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 1e-6*math.Max(1, math.Abs(want)) }
	if !near(m.perFrame, 8e-6) || !near(m.fixed, 0.05) {
		t.Errorf("cpu = %v + %v × frames, want 0.05 + 8e-6", m.fixed, m.perFrame)
	}
	if !near(m.userPerConn, 1500) || !near(m.kernPerC, 5000) {
		t.Errorf("memory per connection %v user, %v kernel (one end), want 1500 and 5000", m.userPerConn, m.kernPerC)
	}
	for _, p := range pts {
		if !near(m.cpu(p), p.ServerCPU/p.WindowS) {
			t.Errorf("at %d: model %v, measured %v", p.Conns, m.cpu(p), p.ServerCPU/p.WindowS)
		}
	}
	if _, ok := fitModel(pts[:1]); ok {
		t.Error("a model from one point")
	}
}

func TestJSONFloatKeepsNaNAndInf(t *testing.T) {
	in := []jsonFloat{nan(), jsonFloat(math.Inf(1)), 2.5}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "[null,1e300,2.5]" {
		t.Errorf("marshalled %s", b)
	}
	var out []jsonFloat
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(float64(out[0])) || !math.IsInf(float64(out[1]), 1) || out[2] != 2.5 {
		t.Errorf("read back %v", out)
	}
}

// TestHAProxyConfigPinsEveryGatewayByCookie: one server line per gateway in both
// backends, each with its cookie, the WebSocket one tracking the HTTP one's check.
func TestHAProxyConfigPinsEveryGatewayByCookie(t *testing.T) {
	c := &cluster{front: "127.0.0.1:9000", gws: []*gateway{
		{name: "gw1", ws: "127.0.1.1:80", http: "127.0.1.1:81", readyPath: "/readyz"},
		{name: "gw2", ws: "127.0.1.2:80", http: "127.0.1.2:81", readyPath: "/readyz"},
	}}
	cfg := c.haproxyConfig(8500)
	for _, want := range []string{
		"maxconn 8500", "bind 127.0.0.1:9000", "cookie SRV insert indirect nocache httponly", "retry-on conn-failure empty-response 503",
		"server gw1 127.0.1.1:81 cookie gw1 check", "server gw2 127.0.1.2:81 cookie gw2 check",
		"server gw1 127.0.1.1:80 cookie gw1 track be_http/gw1", "server gw2 127.0.1.2:80 cookie gw2 track be_http/gw2",
		"uri /readyz", "timeout tunnel 1h",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
}
