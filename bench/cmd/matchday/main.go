// Command matchday reproduces the seed's match day on one box: a real match replaying at
// real pace through a real Redis to K gateway processes, an audience that ramps from
// 5,000 to 120,000 in three minutes from load processes bound to 127.0.0.2-50 (10% of
// them slow readers), and one gateway restarted by handover at the peak. Every load
// process checks every connection's seq chain and state (loadgen --snapshot-url); the
// run fails unless every connection got every delta or a resync and ended equal to the
// final snapshot.
//
// Two variants: "reuseport" (K gateways on one WebSocket port with --reuse-port, as one
// host would run them) and "haproxy" (K gateways on addresses of their own behind
// HAProxy processes with sticky SRV cookies, the configuration of deploy/haproxy.cfg).
// Each run writes a JSON result (time series, cost points, figures) and the "Match day"
// section of BENCHMARKS.md is rendered from every result present (render.go), with its
// plots. `-quick` is the same at a tenth of the audience and time, for `make test`: it
// asserts correctness, never speed, and writes under bench/bin/.
//
// Every process it starts is stopped at the end, on failure and on SIGINT/SIGTERM, and
// dies with it if it is killed (Pdeathsig).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"crease/bench/internal/repo"
)

// options are the run's sizes and paces; scale sets them for the full or the quick run.
type options struct {
	quick     bool
	server    string   // crease, naive or centrifuge
	variants  []string // reuseport, haproxy
	audience  int      // connections at the peak
	base      int      // connected before the ramp
	stages    []int    // audience levels where the cost is measured (the last is the peak)
	ramp      time.Duration
	hold      time.Duration // measurement window at each stage
	settle    time.Duration // before each window: the stage's handshake garbage is collected
	gateways  int
	loops     int
	perProc   int // connections per loadgen process
	perLB     int // connections per HAProxy process
	slowFrac  float64
	slowRate  int
	speed     float64 // balls per second
	drain     time.Duration
	after     time.Duration // the audience held after the handover
	finalWait time.Duration
	spread    time.Duration // loadgen's reconnect spread
	loadNice  int           // niceness of the load processes
	tick      time.Duration // sampling period
	matchFile string
	creaseBin string
	outDir    string // results and plots
	report    string // BENCHMARKS.md to splice the section into ("" for none)
}

func scale(quick bool) options {
	if quick {
		return options{quick: true, audience: 12000, base: 500, stages: []int{1000, 3000, 6000, 12000},
			ramp: 18 * time.Second, hold: 2 * time.Second, settle: time.Second, gateways: 3, loops: 1,
			perProc: 3000, perLB: 8000, slowFrac: 0.1, speed: 1, drain: 2 * time.Second, after: 2 * time.Second,
			finalWait: time.Minute, spread: time.Second, tick: 500 * time.Millisecond}
	}
	return options{audience: 120000, base: 5000, stages: []int{10000, 30000, 60000, 120000},
		ramp: 180 * time.Second, hold: 12 * time.Second, settle: 3 * time.Second, gateways: 8, loops: 1,
		perProc: 9000, perLB: 8000, slowFrac: 0.1, speed: 1.0 / 3, drain: 10 * time.Second, after: 10 * time.Second,
		finalWait: 90 * time.Second, spread: 5 * time.Second, tick: time.Second}
}

func main() {
	quick := flag.Bool("quick", false, "a tenth of the audience and of the time: checks correctness, for make test")
	server := flag.String("server", "crease", "gateway under test: crease, naive or centrifuge")
	variants := flag.String("variants", "reuseport,haproxy", "reuseport (K gateways on one port) and/or haproxy (behind HAProxy with sticky cookies)")
	creaseBin := flag.String("crease-bin", "", "crease binary (default: build ./cmd/crease of the repository)")
	audience := flag.Int("audience", 0, "connections at the peak (default 120000, or 12000 with -quick)")
	gateways := flag.Int("gateways", 0, "gateway processes (default 8, or 3 with -quick; 20,000 descriptors each here)")
	speed := flag.Float64("speed", 0, "balls per second of the replay (default 1/3, or 2 with -quick)")
	out := flag.String("out", "", "directory of results and plots (default bench/matchday, or bench/bin/matchday-quick with -quick)")
	reportF := flag.String("report", "", "BENCHMARKS.md to write the Match day section into (default the repository's; -quick: none)")
	renderOnly := flag.Bool("render", false, "only render the section from the results in -out")
	loadNice := flag.Int("load-nice", 10, "niceness of the load processes: the audience is not on a gateway host, so it gets the cores the gateways, Redis and HAProxy leave (0: the same share)")
	flag.Parse()

	o := scale(*quick)
	o.server = *server
	o.variants = strings.Split(*variants, ",")
	if *audience > 0 {
		ratio := float64(*audience) / float64(o.audience)
		o.audience, o.base = *audience, max(1, int(float64(o.base)*ratio))
		for i := range o.stages {
			o.stages[i] = max(1, int(float64(o.stages[i])*ratio))
		}
		o.stages[len(o.stages)-1] = o.audience
	}
	if *gateways > 0 {
		o.gateways = *gateways
	}
	if *speed > 0 {
		o.speed = *speed
	}
	o.loadNice = *loadNice
	// Slow readers take a little over half of what the match sends (~550 bytes a ball).
	o.slowRate = max(64, int(300*o.speed))

	root, err := repo.Root()
	if err != nil {
		die("%v", err)
	}
	o.matchFile = filepath.Join(root, "ingest", "matches", "1298150.json")
	o.outDir = filepath.Join(root, "bench", "matchday")
	if o.quick {
		o.outDir = filepath.Join(root, "bench", "bin", "matchday-quick")
	} else {
		o.report = filepath.Join(root, "BENCHMARKS.md")
	}
	if *out != "" {
		o.outDir = *out
	}
	if *reportF != "" {
		o.report = *reportF
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		die("%v", err)
	}
	if *renderOnly {
		if err := render(o, root); err != nil {
			die("render: %v", err)
		}
		return
	}
	if err := o.check(); err != nil {
		die("%v", err)
	}

	env, err := prepare(root, *creaseBin, o)
	if err != nil {
		die("%v", err)
	}
	// SIGINT/SIGTERM stop every child before exiting.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "matchday: %v: stopping every process\n", s)
		env.killAll()
		os.Exit(1)
	}()

	started := time.Now()
	var failed []string
	for _, v := range o.variants {
		fmt.Fprintf(os.Stderr, "matchday: %s / %s: %d connections over %d gateways\n", o.server, v, o.audience, o.gateways)
		res := runVariant(env, o, v)
		env.killAll()
		if err := res.save(o.outDir); err != nil {
			die("save: %v", err)
		}
		for _, f := range res.Failures {
			failed = append(failed, v+": "+f)
		}
		fmt.Fprintf(os.Stderr, "matchday: %s / %s done in %v: %s\n", o.server, v, time.Duration(res.WallS*float64(time.Second)).Round(time.Second), res.verdict())
	}
	if err := render(o, root); err != nil {
		die("render: %v", err)
	}
	fmt.Fprintf(os.Stderr, "matchday: results in %s (%v)\n", o.outDir, time.Since(started).Round(time.Second))
	if len(failed) > 0 {
		for _, f := range failed {
			fmt.Fprintln(os.Stderr, "FAIL:", f)
		}
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "matchday: every connection got every delta or a resync and ended equal to the snapshot")
}

func (o options) check() error {
	if o.server != "crease" && o.server != "naive" && o.server != "centrifuge" {
		return fmt.Errorf("-server %q: want crease, naive or centrifuge", o.server)
	}
	for _, v := range o.variants {
		if v != "reuseport" && v != "haproxy" {
			return fmt.Errorf("-variants: %q is not reuseport or haproxy", v)
		}
	}
	if o.gateways < 2 {
		return fmt.Errorf("at least 2 gateways (one is restarted)")
	}
	if per := o.audience / o.gateways; per > 18000 {
		return fmt.Errorf("%d connections per gateway: over the ~19,000 a process holds here (20,000 descriptors); use more gateways", per)
	}
	if o.stages[len(o.stages)-1] != o.audience || o.base >= o.stages[0] {
		return fmt.Errorf("stages %v must rise from the base %d to the audience %d", o.stages, o.base, o.audience)
	}
	return nil
}

func die(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "matchday: "+f+"\n", a...)
	os.Exit(1)
}

func itoa(v int) string { return strconv.Itoa(v) }
