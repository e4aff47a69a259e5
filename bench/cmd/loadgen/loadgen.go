package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"crease/bench/internal/report"
)

// stats are per worker; atomics because progress lines read them from another goroutine.
type stats struct {
	recv             [nRecv]atomic.Int64
	connected        atomic.Int64
	failedHandshakes atomic.Int64
	connectErrors    atomic.Int64
	gaps, gapMissing atomic.Int64
	dups             atomic.Int64
	protoErrors      atomic.Int64
	mu               sync.Mutex // guards the maps below
	status           map[string]int64
	resyncs          map[string]int64
	closes           map[string]int64
}

func (s *stats) bump(m *map[string]int64, k string) {
	s.mu.Lock()
	if *m == nil {
		*m = map[string]int64{}
	}
	(*m)[k]++
	s.mu.Unlock()
}

type worker struct {
	lg   *loadgen
	epfd int
	rbuf []byte
	hist *hdrhistogram.Histogram
	st   stats
	rnd  uint64
}

type loadgen struct {
	cfg       config
	table     []atomic.Pointer[conn] // by fd
	workers   []*worker
	dialq     chan *conn
	inflight  chan struct{}
	open      atomic.Int64
	pending   atomic.Int64 // connections not open and not given up
	attempted atomic.Int64
	stalled   atomic.Int64
	stopping  atomic.Bool
	ready     atomic.Bool
	outMu     sync.Mutex

	stormMu    sync.Mutex
	storm      report.Storm
	stormArmed bool
}

func newLoadgen(cfg config) *loadgen {
	var lim unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	if cfg.conns+64 > int(lim.Cur) {
		fmt.Fprintf(os.Stderr, "loadgen: warning: %d connections but RLIMIT_NOFILE is %d\n", cfg.conns, lim.Cur)
	}
	lg := &loadgen{
		cfg:      cfg,
		table:    make([]atomic.Pointer[conn], int(lim.Cur)+1024),
		dialq:    make(chan *conn, cfg.conns+16),
		inflight: make(chan struct{}, cfg.inflight),
	}
	for i := 0; i < cfg.workers; i++ {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			fatal("epoll: %v", err)
		}
		lg.workers = append(lg.workers, &worker{lg: lg, epfd: epfd, rbuf: make([]byte, 256<<10), hist: report.NewHist(), rnd: uint64(time.Now().UnixNano()) | 1 + uint64(i)})
	}
	return lg
}

func (lg *loadgen) run() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	for _, w := range lg.workers {
		go w.loop()
	}
	go lg.dialer()
	start := time.Now()
	n := lg.cfg.conns
	acc := 0.0
	for i := 0; i < n; i++ {
		c := &conn{id: i, match: lg.pickMatch(i, n)}
		prev := acc
		acc += lg.cfg.stallFrac
		c.stalled = int(acc) > int(prev)
		lg.pending.Add(1)
		lg.dialq <- c
	}
	var deadline <-chan time.Time
	if lg.cfg.duration > 0 {
		deadline = time.After(lg.cfg.duration)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGUSR1 {
				lg.emit("progress", false)
				continue
			}
			lg.finish()
			return
		case <-deadline:
			lg.finish()
			return
		case <-tick.C:
			if !lg.ready.Load() && (lg.pending.Load() == 0 || time.Since(start) > lg.cfg.readyTimeout) {
				lg.ready.Store(true)
				lg.stormMu.Lock()
				lg.stormArmed = lg.cfg.reconnect != "off"
				lg.stormMu.Unlock()
				fmt.Fprintf(os.Stderr, "loadgen %d: %d open after %v\n", os.Getpid(), lg.open.Load(), time.Since(start).Round(time.Millisecond))
				lg.emit("ready", false)
			}
		}
	}
}

func (lg *loadgen) finish() {
	lg.stopping.Store(true)
	// Let the workers leave epoll_wait (100 ms timeout) before reading their histograms.
	time.Sleep(150 * time.Millisecond)
	lg.emit("report", true)
	os.Exit(0)
}

func (lg *loadgen) pickMatch(i, n int) string {
	ms := lg.cfg.matches
	if lg.cfg.hotFrac > 0 && len(ms) > 1 {
		// Interleave hot and cold connections so that every process and source address
		// carries the same mix.
		if float64(i%1000) < lg.cfg.hotFrac*1000 {
			return ms[0]
		}
		return ms[1+i%(len(ms)-1)]
	}
	return ms[i%len(ms)]
}

func (lg *loadgen) emit(event string, final bool) {
	ln := report.Line{Event: event, PID: os.Getpid(), Open: lg.open.Load(), Target: lg.cfg.conns,
		Attempted: lg.attempted.Load(), Stalled: lg.stalled.Load(), Received: map[string]int64{}}
	var hist *hdrhistogram.Histogram
	if final {
		hist = report.NewHist()
	}
	for _, w := range lg.workers {
		s := &w.st
		for i := range s.recv {
			if v := s.recv[i].Load(); v > 0 {
				ln.Received[recvNames[i]] += v
			}
		}
		ln.Connected += s.connected.Load()
		ln.FailedHandshakes += s.failedHandshakes.Load()
		ln.ConnectErrors += s.connectErrors.Load()
		ln.Gaps += s.gaps.Load()
		ln.GapMissing += s.gapMissing.Load()
		ln.Dups += s.dups.Load()
		ln.ProtocolErrors += s.protoErrors.Load()
		s.mu.Lock()
		ln.HandshakeStatus = report.AddCounts(ln.HandshakeStatus, s.status)
		ln.Resyncs = report.AddCounts(ln.Resyncs, s.resyncs)
		ln.Closes = report.AddCounts(ln.Closes, s.closes)
		s.mu.Unlock()
		if final {
			hist.Merge(w.hist)
		}
	}
	if final {
		ln.Latency = report.Summarise(hist)
		ln.Hist = report.EncodeHist(hist)
	}
	if lg.cfg.reconnect != "off" {
		lg.stormMu.Lock()
		st := lg.storm
		st.Handshakes = make(map[int64]int64, len(lg.storm.Handshakes))
		for k, v := range lg.storm.Handshakes {
			st.Handshakes[k] = v
		}
		lg.stormMu.Unlock()
		ln.Storm = &st
	}
	b, _ := json.Marshal(ln)
	lg.outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	lg.outMu.Unlock()
}

func (lg *loadgen) stormClose() {
	lg.stormMu.Lock()
	if lg.stormArmed && lg.storm.FirstCloseUs == 0 {
		lg.storm.FirstCloseUs = time.Now().UnixMicro()
	}
	lg.stormMu.Unlock()
}

func (lg *loadgen) stormOpen() {
	if lg.cfg.reconnect == "off" {
		return
	}
	nowUs := time.Now().UnixMicro()
	lg.stormMu.Lock()
	if lg.stormArmed && lg.storm.FirstCloseUs != 0 {
		if lg.storm.Handshakes == nil {
			lg.storm.Handshakes = map[int64]int64{}
		}
		lg.storm.Handshakes[nowUs/100_000]++
		lg.storm.Reconnects++
		if lg.storm.AllBackUs == 0 && lg.open.Load() >= int64(lg.cfg.conns) {
			lg.storm.AllBackUs = nowUs
		}
	}
	lg.stormMu.Unlock()
}
