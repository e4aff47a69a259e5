// Command harness runs the benchmark scenarios against every server in turn (crease and
// the baselines), each in fresh processes on a private Redis, and writes BENCHMARKS.md
// and plots. `crease bench` and `make bench` call it; -quick is the CI smoke run.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"crease/bench/internal/repo"
)

type harness struct {
	root, benchDir, binDir, logDir string
	quick                          bool
	perProc                        int
	settle                         time.Duration
	redisAddr                      string
	redisPid                       int
	servers                        []*serverSpec
	scenarios                      []scenario
	results                        []*result
	notes                          []string
	failures                       []string
}

func (h *harness) bin(name string) string { return filepath.Join(h.binDir, name) }

func main() {
	quick := flag.Bool("quick", false, "tiny sizes: a smoke run under a minute that checks the harness works (not speed)")
	serversF := flag.String("servers", "crease,naive,centrifuge,floor1,floor10,bare", "servers to measure")
	scenariosF := flag.String("scenarios", "idle,steady10,steady2,lag-pinned,burst,skew,slow0,slow,storm-fixed,storm-jitter,storm-socket,storm-slow,storm-slow-socket,storm-handover", "scenarios to run")
	creaseBin := flag.String("crease-bin", "", "crease binary to measure (default: build ./cmd/crease of the repo; skipped if that fails)")
	loops := flag.Int("loops", 2, "crease --loops")
	creasePub := flag.String("crease-publish", "crease-lua", "how deltas reach crease: crease-lua (crease/bus/redis, as ingest does) or crease (a bare PUBLISH, like the baselines)")
	out := flag.String("out", "", "markdown report (default BENCHMARKS.md at the repo root, or bench/bin/BENCHMARKS-quick.md with -quick)")
	plots := flag.String("plots", "", "plot directory (default bench/plots, or bench/bin/plots-quick with -quick)")
	conns := flag.Int("conns", 15000, "connections for the delivery and storm scenarios")
	perProc := flag.Int("per-proc", 9000, "connections per loadgen process (under ~18,000 descriptors each)")
	levels := flag.String("idle-levels", "1000,5000,10000,18000", "connection counts of the idle density scenario")
	flag.Parse()

	h := &harness{quick: *quick, perProc: *perProc, settle: time.Second}
	root, err := repo.Root()
	if err != nil {
		die("%v", err)
	}
	h.root, h.benchDir, h.binDir = root, filepath.Join(root, "bench"), filepath.Join(root, "bench", "bin")
	if *out == "" {
		*out = filepath.Join(h.root, "BENCHMARKS.md")
		if h.quick {
			*out = filepath.Join(h.binDir, "BENCHMARKS-quick.md")
		}
	}
	if *plots == "" {
		*plots = filepath.Join(h.benchDir, "plots")
		if h.quick {
			*plots = filepath.Join(h.binDir, "plots-quick")
		}
	}
	var lv []int
	for _, s := range strings.Split(*levels, ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && v > 0 {
			lv = append(lv, v)
		}
	}
	if h.quick {
		*conns = 200
		lv = []int{100, 300}
		h.settle = 200 * time.Millisecond
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if h.quick && !set["scenarios"] {
		// The jittered storms wait out the spread and crease's drain: too long for a smoke
		// run (storm-handover stays: it runs the same restart code).
		for _, sc := range []string{",storm-jitter", ",storm-socket", ",storm-slow-socket", ",storm-slow"} {
			*scenariosF = strings.Replace(*scenariosF, sc, "", 1)
		}
	}
	h.scenarios = pickScenarios(*scenariosF, *conns, lv, h.quick)
	h.logDir = filepath.Join(h.binDir, "logs", time.Now().Format("20060102-150405"))
	_ = os.MkdirAll(h.logDir, 0o755)

	started := time.Now()
	if err := h.build(); err != nil {
		die("%v", err)
	}
	h.defineServers(*serversF, *creaseBin, *loops, *creasePub)
	stopRedis, err := h.startRedis()
	if err != nil {
		die("redis: %v (install redis-server: apt-get install -y redis-server)", err)
	}
	defer stopRedis()

	for _, sc := range h.scenarios {
		for _, s := range h.servers {
			if s.skip != "" {
				continue // skipped before, or could not start in an earlier scenario
			}
			if !s.fanout && sc.kind == "delivery" || sc.only != "" && sc.only != s.name {
				continue
			}
			fmt.Fprintf(os.Stderr, "harness: %s / %s\n", sc.name, s.name)
			r := h.run(s, sc)
			h.results = append(h.results, r)
			if r.Err != "" {
				fmt.Fprintf(os.Stderr, "harness:   error: %s\n", r.Err)
			}
			if s.skip == "" {
				h.check(s, sc, r)
			}
		}
	}
	stopRedis()
	if err := h.write(*out, *plots, started); err != nil {
		die("write: %v", err)
	}
	fmt.Fprintf(os.Stderr, "harness: wrote %s and plots in %s (%v)\n", *out, *plots, time.Since(started).Round(time.Second))
	if h.quick && len(h.failures) > 0 {
		for _, f := range h.failures {
			fmt.Fprintln(os.Stderr, "FAIL:", f)
		}
		os.Exit(1)
	}
	if h.quick {
		fmt.Fprintf(os.Stderr, "harness: quick run OK (%d runs)\n", len(h.results))
	}
}

func die(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "harness: "+f+"\n", a...)
	os.Exit(1)
}
