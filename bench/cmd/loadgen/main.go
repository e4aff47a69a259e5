// Command loadgen is the event-driven WebSocket load client of the benchmarks: a few
// epoll loops hold all connections (no goroutine per connection), so that the client is
// not what is being measured.
//
// Stdout carries one JSON object per line (report.Line): "started" once it handles its
// signals, "ready" once the connect phase is over, "progress" on SIGUSR1, and "report" at
// the end (SIGTERM, SIGINT or --duration). SIGUSR2 starts the final check of
// --snapshot-url (final.go). Everything else goes to stderr.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type config struct {
	host, path    string
	port          int
	conns         int
	matches       []string
	hotFrac       float64
	stallFrac     float64
	srcs          [][4]byte
	proto         string // crease or centrifuge
	workers       int
	inflight      int
	connectRate   float64
	reconnect     string // off, fixed, jitter
	delay         time.Duration
	spread        time.Duration
	backoffCap    time.Duration
	duration      time.Duration
	readyTimeout  time.Duration
	stallRcvBuf   int
	subscribeByOp bool
	// Match day (bench/cmd/matchday): slow readers, latency windows, cookies and the
	// client algorithm's check.
	slowFrac        float64
	slowRate        int
	slowRcvBuf      int
	windowHist      bool
	cookies         bool
	snapshotURLs    []string
	snapshotWorkers int
}

func main() {
	var cfg config
	var rawURL, matches, srcRange string
	var matchCount int
	flag.StringVar(&rawURL, "url", "ws://127.0.0.1:8080/ws", "WebSocket URL (the match query is added per connection)")
	flag.IntVar(&cfg.conns, "conns", 100, "connections to keep")
	flag.StringVar(&matches, "matches", "", "comma-separated match ids (default m0..m{match-count-1})")
	flag.IntVar(&matchCount, "match-count", 1, "number of matches m0.. when --matches is empty")
	flag.Float64Var(&cfg.hotFrac, "hot-frac", 0, "fraction of connections on the first match; the rest spread over the others")
	flag.Float64Var(&cfg.stallFrac, "stall-frac", 0, "fraction of connections that stop reading after the upgrade (tiny SO_RCVBUF)")
	flag.IntVar(&cfg.stallRcvBuf, "stall-rcvbuf", 4096, "SO_RCVBUF of stalled connections")
	flag.StringVar(&srcRange, "src", "127.0.0.2-127.0.0.50", "source address range to bind before connect (A-B, or one address)")
	flag.StringVar(&cfg.proto, "proto", "crease", "protocol: crease (also the naive/floor/bare baselines) or centrifuge (JSON protocol)")
	flag.IntVar(&cfg.workers, "workers", runtime.GOMAXPROCS(0), "epoll loops")
	flag.IntVar(&cfg.inflight, "inflight", 256, "max handshakes in flight")
	flag.Float64Var(&cfg.connectRate, "connect-rate", 0, "max new connections per second (0: as fast as --inflight allows)")
	flag.StringVar(&cfg.reconnect, "reconnect", "off", "on close: off, fixed (after --delay, no jitter) or jitter (0..--spread, then full-jitter backoff)")
	flag.DurationVar(&cfg.delay, "delay", 100*time.Millisecond, "fixed reconnect delay, and the backoff base")
	flag.DurationVar(&cfg.spread, "spread", 5*time.Second, "jitter mode: first reconnect uniformly in 0..spread")
	flag.DurationVar(&cfg.backoffCap, "backoff-cap", 10*time.Second, "jitter mode: cap of the exponential backoff")
	flag.DurationVar(&cfg.duration, "duration", 0, "stop and report after this long (0: on SIGTERM/SIGINT)")
	flag.DurationVar(&cfg.readyTimeout, "ready-timeout", 60*time.Second, "print ready after this long even if connections are still pending")
	flag.BoolVar(&cfg.subscribeByOp, "subscribe-op", false, "subscribe with the op frame instead of ?match=")
	flag.Float64Var(&cfg.slowFrac, "slow-frac", 0, "fraction of connections that read at most --slow-rate bytes/s after the upgrade (until SIGUSR2)")
	flag.IntVar(&cfg.slowRate, "slow-rate", 256, "bytes per second a slow reader reads")
	flag.IntVar(&cfg.slowRcvBuf, "slow-rcvbuf", 4096, "SO_RCVBUF of slow readers")
	flag.BoolVar(&cfg.windowHist, "window-hist", false, "progress lines carry the latency histogram of the deltas since the previous one")
	flag.BoolVar(&cfg.cookies, "cookies", false, "keep the cookie of the upgrade answer (HAProxy's SRV) and send it when reconnecting; count upgrades landing on another gateway than the cookie names")
	var snapURLs string
	flag.StringVar(&snapURLs, "snapshot-url", "", "comma-separated HTTP bases serving GET /v1/matches/{id}: each subscription follows and checks the client algorithm of PROTOCOL.md; SIGUSR2 starts the final check")
	flag.IntVar(&cfg.snapshotWorkers, "snapshot-workers", 4, "concurrent snapshot requests (keep-alive connections)")
	flag.Parse()
	if snapURLs != "" {
		cfg.snapshotURLs = strings.Split(snapURLs, ",")
	}
	if cfg.slowRate < 1 || cfg.snapshotWorkers < 1 {
		fatal("--slow-rate and --snapshot-workers must be at least 1")
	}

	u, err := url.Parse(rawURL)
	if err != nil {
		fatal("bad --url: %v", err)
	}
	cfg.host = u.Hostname()
	cfg.port, _ = strconv.Atoi(u.Port())
	if cfg.port == 0 {
		cfg.port = 80
	}
	cfg.path = u.Path
	if matches != "" {
		cfg.matches = strings.Split(matches, ",")
	} else {
		for i := 0; i < matchCount; i++ {
			cfg.matches = append(cfg.matches, "m"+strconv.Itoa(i))
		}
	}
	if cfg.srcs, err = parseSrcs(srcRange); err != nil {
		fatal("bad --src: %v", err)
	}
	if cfg.workers < 1 {
		cfg.workers = 1
	}
	lg := newLoadgen(cfg)
	lg.run()
}

func fatal(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+f+"\n", a...)
	os.Exit(2)
}

func parseSrcs(s string) ([][4]byte, error) {
	lo, hi, _ := strings.Cut(s, "-")
	if hi == "" {
		hi = lo
	}
	a, b := net.ParseIP(lo).To4(), net.ParseIP(hi).To4()
	if a == nil || b == nil {
		return nil, fmt.Errorf("%q", s)
	}
	var out [][4]byte
	for x := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]); ; x++ {
		out = append(out, [4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
		if x == uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]) || len(out) > 1<<16 {
			break
		}
	}
	return out, nil
}
