package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"crease/bench/internal/report"
)

// Result is everything one run (one server, one variant) measured; render.go makes the
// Match day section from the results on disk.
type Result struct {
	Server, Variant string
	Quick           bool
	Date, Commit    string
	Machine         string
	Command         string
	WallS           float64

	Audience, Base, Gateways, Loops, LoadProcs, LBs int
	Stages                                          []int
	RampS, HoldS, SettleS, DrainS                   float64
	RampTookS                                       float64 // the ramp as it went (0: it never ended)
	LoadNice                                        int     // niceness of the load processes
	Speed, SlowFrac                                 float64
	SlowRate                                        int
	Match                                           string

	Events   []Event
	Series   []Sample
	Points   []CostPoint
	Handover *Handover
	Totals   Totals
	// Per gateway process over the whole run, from its first and last scrape.
	Procs    []ProcSummary
	Failures []string
}

// Event marks a moment of the run on the plots.
type Event struct {
	T    float64
	What string
}

// CostPoint is one measurement window at a stage of the ramp.
type CostPoint struct {
	Conns        int64   // open during the window
	WindowS      float64 // its length
	Delivered    int64   // frames received by the audience in it
	ServerCPU    float64 // CPU-s of every gateway process in it
	LBCPU        float64 // of the HAProxy processes (haproxy variant)
	LoadCPU      float64 // of the load processes
	ServerRSS    int64   // of every gateway process at its end
	ServerRSS0   int64   // the same with no connection (at the start)
	SockMem      int64   // /proc/net/sockstat TCP mem at its end, bytes
	SockMem0     int64   // before the first connection
	Slab, Slab0  int64   // socket slab caches at its end and before (-1: unreadable)
	SocketsInUse int64   // TCP sockets in use at its end (both ends of every connection)
}

// CPUPerM is the gateways' CPU-s per million frames delivered.
func (p CostPoint) CPUPerM() float64 {
	if p.Delivered <= 0 {
		return math.NaN()
	}
	return p.ServerCPU / float64(p.Delivered) * 1e6
}

// UserPerConn is the gateways' RSS growth per connection, bytes.
func (p CostPoint) UserPerConn() float64 {
	return float64(p.ServerRSS-p.ServerRSS0) / float64(max(p.Conns, 1))
}

// KernelPerConn is the kernel's socket memory growth per connection (buffers and slab
// objects of both ends on loopback), bytes; NaN without /proc/slabinfo.
func (p CostPoint) KernelPerConn() float64 {
	if p.Slab < 0 || p.Slab0 < 0 {
		return math.NaN()
	}
	return float64(p.SockMem-p.SockMem0+p.Slab-p.Slab0) / float64(max(p.Conns, 1))
}

// Handover is the restart of one gateway at the peak.
type Handover struct {
	Gateway      string
	DrainedConns float64 // the old process's connections when it got SIGTERM
	ExitS        float64 // from SIGTERM to the old process's exit
	BackS        float64 // from SIGTERM to the whole audience open again
	Failures     int64   // failed connects and handshakes meanwhile
	Resyncs      int64
	ToSuccessor  float64 // the successor's connections once all were back
}

// Totals are the load processes' final reports, merged.
type Totals struct {
	Received         map[string]int64
	Latency          *report.Percentiles // publish ts to receive, µs, slow readers excluded
	Resyncs, Closes  map[string]int64
	HandshakeStatus  map[string]int64
	Gaps, Dups       int64
	ProtocolErrors   int64
	OffCookie        int64
	Slow             int64
	Chain            report.Chain
	StateOK          bool // every load process found the final state equal to the snapshot
	Equal, Connected int64
}

// ProcSummary is one gateway process over the run.
type ProcSummary struct {
	Label                      string
	PeakConns                  float64
	LagP99, FanoutP99, BusP99  jsonFloat // ms, over every scrape of the process
	LagProbes, BusMessages     float64
	CPU                        float64
	PeakRSS                    int64
	LagLE2, LagLE50, BusLE100  float64 // shares within 2 ms, 50 ms (lag) and 100 ms (bus)
	FromStartS, UntilS         float64
	PeakConnsFromFDs, Restarts int
}

func (r *Result) file() string { return r.Server + "-" + r.Variant + ".json" }

func (r *Result) save(dir string) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, r.file()), b, 0o644)
}

// loadResults reads every result in dir, crease first, then by server and variant.
func loadResults(dir string) ([]*Result, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*Result
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %v", f, err)
		}
		out = append(out, &r)
	}
	rank := map[string]int{"crease": 0, "naive": 1, "centrifuge": 2}
	sort.Slice(out, func(i, j int) bool {
		if rank[out[i].Server] != rank[out[j].Server] {
			return rank[out[i].Server] < rank[out[j].Server]
		}
		return out[i].Variant > out[j].Variant // reuseport before haproxy
	})
	return out, nil
}

func (r *Result) verdict() string {
	if len(r.Failures) == 0 {
		return fmt.Sprintf("all %d equal to the final snapshot", r.Totals.Equal)
	}
	return fmt.Sprintf("%d failure(s): %s", len(r.Failures), strings.Join(r.Failures, "; "))
}

// jsonFloat is a float64 written as null when NaN and as 1e300 when infinite (JSON has
// neither), and read back the same way.
type jsonFloat float64

func nan() jsonFloat { return jsonFloat(math.NaN()) }

func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte("null"), nil
	case math.IsInf(v, 1):
		return []byte("1e300"), nil
	}
	return json.Marshal(v)
}

func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = nan()
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v >= 1e300 {
		v = math.Inf(1)
	}
	*f = jsonFloat(v)
	return nil
}
