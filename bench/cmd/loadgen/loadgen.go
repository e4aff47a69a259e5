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
	offCookie        atomic.Int64
	mu               sync.Mutex // guards the maps below
	status           map[string]int64
	resyncs          map[string]int64
	closes           map[string]int64
	nodes            map[string]int64 // open connections by hello node
}

func (s *stats) addNode(node string, d int64) {
	s.mu.Lock()
	if s.nodes == nil {
		s.nodes = map[string]int64{}
	}
	s.nodes[node] += d
	if s.nodes[node] == 0 {
		delete(s.nodes, node)
	}
	s.mu.Unlock()
}

// chainStats are a worker's counts of the client algorithm's check (chain.go).
type chainStats struct {
	divergent, mismatch, refetches, gaveUp atomic.Int64
	// The final count of this worker's open subscriptions, refreshed by the worker.
	equal, behind, waiting, tainted atomic.Int64
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
	evfd int // eventfd in epfd: wakes the worker for a snapshot answer
	rbuf []byte
	hist *hdrhistogram.Histogram
	st   stats
	rnd  uint64
	// open holds this worker's open connections and the gen each opened with; only
	// the worker touches it.
	open map[*conn]uint32
	// win is the histogram of the current progress window (--window-hist).
	winMu sync.Mutex
	win   *hdrhistogram.Histogram
	// Slow readers (slow.go).
	slow     []slowConn
	slowAt   time.Time
	caughtUp bool
	// The client algorithm's check (chain.go): its counts, the snapshot answers for
	// this worker, the last delta checked against the reference.
	chain     chainStats
	snapq     chan snapResult
	asks      []snapReq // requests the full snapshot queue did not take yet (flushAsks)
	lastRef   *matchRef
	lastKey   seqKey
	lastHash  uint64
	countedAt time.Time
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
	slowCount atomic.Int64
	stopping  atomic.Bool
	ready     atomic.Bool
	outMu     sync.Mutex
	// workersDone is done when every worker has left its loop after stopping.
	workersDone sync.WaitGroup

	// The client algorithm's check (--snapshot-url): the snapshot fetcher, the
	// reference of each match, and the final snapshot once SIGUSR2 asked for it.
	snaps     *snapshotter
	refsMu    sync.Mutex
	refs      map[string]*matchRef
	catchup   atomic.Bool
	finalMu   sync.Mutex
	final     *snapshot
	finalDone atomic.Bool

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
	if len(cfg.snapshotURLs) > 0 {
		lg.snaps = newSnapshotter(cfg.snapshotURLs, cfg.snapshotWorkers, 2*cfg.conns+64)
		lg.refs = map[string]*matchRef{}
	}
	for i := 0; i < cfg.workers; i++ {
		epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			fatal("epoll: %v", err)
		}
		evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			fatal("eventfd: %v", err)
		}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
			fatal("epoll_ctl eventfd: %v", err)
		}
		lg.workers = append(lg.workers, &worker{lg: lg, epfd: epfd, evfd: evfd, rbuf: make([]byte, 256<<10), hist: report.NewHist(),
			rnd: uint64(time.Now().UnixNano()) | 1 + uint64(i), open: map[*conn]uint32{}, win: report.NewHist(),
			snapq: make(chan snapResult, cfg.conns/cfg.workers+64), slowAt: time.Now()})
	}
	return lg
}

func (lg *loadgen) run() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	// From here on the signals are ours: say so, so that nobody signals us before.
	lg.emit("started", false)
	for _, w := range lg.workers {
		lg.workersDone.Add(1)
		go w.loop()
	}
	go lg.dialer()
	start := time.Now()
	n := lg.cfg.conns
	conns := make([]*conn, n)
	stallAcc, slowAcc := 0.0, 0.0
	for i := range conns {
		c := &conn{id: i, match: lg.pickMatch(i, n)}
		prev := stallAcc
		stallAcc += lg.cfg.stallFrac
		c.stalled = int(stallAcc) > int(prev)
		prev = slowAcc
		slowAcc += lg.cfg.slowFrac
		c.slow = !c.stalled && int(slowAcc) > int(prev)
		if c.slow {
			lg.slowCount.Add(1)
		}
		lg.pending.Add(1)
		conns[i] = c
	}
	go lg.ramp(conns)
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
			if s == syscall.SIGUSR2 {
				lg.startFinal()
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
	// The workers leave epoll_wait within its 100 ms timeout; their histograms are
	// read once they have. A worker stuck in a syscall is not waited for long.
	done := make(chan struct{})
	go func() { lg.workersDone.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		fmt.Fprintf(os.Stderr, "loadgen %d: workers did not stop within 2 s\n", os.Getpid())
	}
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
		Attempted: lg.attempted.Load(), Stalled: lg.stalled.Load(), Slow: lg.slowCount.Load(), Received: map[string]int64{}}
	var hist, win *hdrhistogram.Histogram
	if final {
		hist = report.NewHist()
	}
	if lg.cfg.windowHist && event == "progress" {
		win = report.NewHist()
	}
	if lg.snaps != nil {
		ln.Chain = lg.chainReport()
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
		ln.OffCookie += s.offCookie.Load()
		s.mu.Lock()
		ln.HandshakeStatus = report.AddCounts(ln.HandshakeStatus, s.status)
		ln.Resyncs = report.AddCounts(ln.Resyncs, s.resyncs)
		ln.Closes = report.AddCounts(ln.Closes, s.closes)
		ln.Nodes = report.AddCounts(ln.Nodes, s.nodes)
		s.mu.Unlock()
		if final {
			hist.Merge(w.hist)
		}
		if win != nil {
			w.winMu.Lock()
			win.Merge(w.win)
			w.win.Reset()
			w.winMu.Unlock()
		}
	}
	if final {
		ln.Latency = report.Summarise(hist)
		ln.Hist = report.EncodeHist(hist)
	}
	if win != nil {
		ln.WindowHist = report.EncodeHist(win)
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
