package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"crease/bench/internal/report"
)

type scenario struct {
	name, title string
	kind        string // idle, delivery, storm
	conns       int
	matches     int
	hot, stall  float64
	rate        float64
	count       int
	reconnect   string
	spread      time.Duration
	levels      []int
	only        string // run this scenario for one server only (a baseline of its own)
	// handover: the storm restarts the server by starting a successor on the same ports
	// (--reuse-port) before the SIGTERM, and the drain window equals spread.
	handover bool
	// pin: the server runs with one loop on CPU 0, everything else (load generator,
	// publisher, Redis) on the other CPUs.
	pin bool
	// socket: the harness binds the server's ports and passes the listening sockets to
	// every process it starts (LISTEN_FDS), as systemd's socket activation does, so they
	// outlive each process.
	socket bool
	// pause: how long the storm waits between the old process's exit and the new one's
	// start (a restart by hand, or a slow start).
	pause time.Duration
}

type idlePoint struct {
	Conns    int64
	RSSDelta int64
	PerConn  float64 // bytes
}

type result struct {
	Server, Scenario string
	Err              string
	Target           int64
	Connected        int64
	FailedHS         int64
	Expected         int64
	Delivered        int64
	Gaps, Dups       int64
	Resyncs, Closes  map[string]int64
	HSStatus         map[string]int64
	CPU              float64
	CPUPerM          float64
	LoadgenCPU       float64
	Wall             float64
	Lat              *report.Percentiles
	hist             *hdrhistogram.Histogram
	RSSBefore        int64
	RSSAfter         int64
	PeakRSS          int64
	Idle             []idlePoint
	AllBack          bool
	AllBackS         float64
	PeakHSPerS       float64
	Failures         int64
	Reconnects       int64
	// ExitedS and UpAgainS are when, after the SIGTERM of a restart in place, the old
	// process had exited and the new one listened (answered, with held sockets).
	ExitedS, UpAgainS float64
	Stalled           int64
	Extra             string
	// RunQueueMS is how long the server's threads waited, runnable, for a CPU: ms per
	// second of the delivery run (schedstat run_delay, summed over threads).
	RunQueueMS float64
	Lag        *lagStats
}

func pickScenarios(list string, conns int, levels []int, quick bool) []scenario {
	spread := 5 * time.Second
	slowPause := 3 * time.Second
	// The slow mix needs more bytes per stalled connection than the kernel buffers hold
	// (~20-70 KB on loopback), or no server ever notices a stalled reader.
	steadyCount, slowCount, burst := 100, 400, 200
	if quick {
		spread = 500 * time.Millisecond
		slowPause = 300 * time.Millisecond
		steadyCount, slowCount, burst = 10, 20, 20
	}
	all := []scenario{
		{name: "idle", title: "Idle density", kind: "idle", levels: levels},
		{name: "steady10", title: "Steady, 10 deltas/s to everyone", kind: "delivery", conns: conns, matches: 10, rate: 10, count: steadyCount},
		{name: "steady2", title: "Steady, 2 deltas/s to everyone", kind: "delivery", conns: conns, matches: 10, rate: 2, count: max(steadyCount/5, 3)},
		{name: "burst", title: "Burst: deltas as fast as possible, all on one match", kind: "delivery", conns: conns, matches: 1, count: burst},
		{name: "skew", title: "Hot-match skew: 80% on one match, the rest over 50 cold ones, 10 deltas/s each", kind: "delivery", conns: conns, matches: 51, hot: 0.8, rate: 10, count: steadyCount / 2},
		{name: "lag-pinned", title: "Steady, 2 deltas/s, the gateway on a core of its own: crease --loops 1 on CPU 0, load generator, publisher and Redis on the others (crease only: its loop lag without CPU contention)",
			kind: "delivery", conns: conns, matches: 10, rate: 2, count: max(steadyCount/5, 3), only: "crease", pin: true},
		{name: "slow0", title: "Slow-client mix, baseline: nobody stalled, 40 deltas/s (crease only: the reference for its own 10% stalled row)", kind: "delivery", conns: conns, matches: 10, rate: 40, count: slowCount, only: "crease"},
		{name: "slow", title: "Slow-client mix: 10% stop reading, 40 deltas/s", kind: "delivery", conns: conns, matches: 10, stall: 0.1, rate: 40, count: slowCount},
		{name: "storm-fixed", title: "Reconnect storm (server restarted), clients retry after a fixed 100 ms, no jitter", kind: "storm", conns: conns, reconnect: "fixed"},
		{name: "storm-jitter", title: fmt.Sprintf("Reconnect storm (server restarted), clients spread over %v then back off with full jitter", spread), kind: "storm", conns: conns, reconnect: "jitter", spread: spread},
		{name: "storm-socket", title: fmt.Sprintf("Reconnect storm, restart in place with the listening sockets held across it (crease only, as systemd socket activation does), clients spread over %v then back off with full jitter", spread),
			kind: "storm", conns: conns, reconnect: "jitter", spread: spread, socket: true, only: "crease"},
		{name: "storm-slow", title: fmt.Sprintf("Reconnect storm, a slow restart: the server started again %v after the old one exited, clients spread over %v then back off with full jitter", slowPause, spread),
			kind: "storm", conns: conns, reconnect: "jitter", spread: spread, pause: slowPause},
		{name: "storm-slow-socket", title: fmt.Sprintf("Reconnect storm, a slow restart (%v) with the listening sockets held across it (crease only, socket activation)", slowPause),
			kind: "storm", conns: conns, reconnect: "jitter", spread: spread, pause: slowPause, socket: true, only: "crease"},
		{name: "storm-handover", title: fmt.Sprintf("Reconnect storm, restart by handover (crease only): a successor binds the same ports with --reuse-port, then the old gateway drains over %v", spread),
			kind: "storm", conns: conns, reconnect: "jitter", spread: spread, handover: true, only: "crease"},
	}
	want := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		want[strings.TrimSpace(s)] = true
	}
	var out []scenario
	for _, s := range all {
		if want[s.name] {
			out = append(out, s)
		}
	}
	return out
}
