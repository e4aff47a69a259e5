// Command loadgen is the event-driven WebSocket load client of the benchmarks: a few
// epoll loops hold all connections (no goroutine per connection), so that the client is
// not what is being measured.
//
// Stdout carries one JSON object per line (report.Line): "ready" once the connect phase
// is over, "progress" on SIGUSR1, and "report" at the end (SIGTERM, SIGINT or
// --duration). Everything else goes to stderr.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"math/bits"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"crease/bench/internal/report"
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
	flag.Parse()

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

// Connection states.
const (
	stDialing = iota
	stHandshake
	stOpen
	stClosed
)

// Indices of received-frame counters.
const (
	rHello = iota
	rSubscribed
	rDelta
	rEvent
	rResync
	rReconnect
	rError
	rOther
	rBinary
	rPing
	nRecv
)

var recvNames = [nRecv]string{"hello", "subscribed", "delta", "event", "resync", "reconnect", "error", "other", "binary", "ping"}

type sub struct {
	match string
	last  uint64
}

// conn is owned by one worker once dialed; the dialer only creates and registers it.
type conn struct {
	id       int
	fd       int
	w        *worker
	state    int
	stalled  bool
	match    string
	buf      []byte // partial handshake answer or partial frame
	subs     []sub
	gotClose bool
	attempt  int
	opened   bool  // was open at least once
	drained  bool  // a reconnect frame came: wait afterMs, nothing else
	afterMs  int64 // from a reconnect frame
	key      string
	started  time.Time
}

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
		ln.HandshakeStatus = addMap(ln.HandshakeStatus, s.status)
		ln.Resyncs = addMap(ln.Resyncs, s.resyncs)
		ln.Closes = addMap(ln.Closes, s.closes)
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

func addMap(dst, src map[string]int64) map[string]int64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]int64{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

// dialer opens sockets (bind, non-blocking connect) and hands them to a worker's epoll.
func (lg *loadgen) dialer() {
	var interval time.Duration
	if lg.cfg.connectRate > 0 {
		interval = time.Duration(float64(time.Second) / lg.cfg.connectRate)
	}
	next := time.Now()
	for c := range lg.dialq {
		if lg.stopping.Load() {
			return
		}
		lg.inflight <- struct{}{}
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
			if time.Since(next) > time.Second {
				next = time.Now()
			}
		}
		lg.dial(c)
	}
}

func (lg *loadgen) dial(c *conn) {
	lg.attempted.Add(1)
	w := lg.workers[c.id%len(lg.workers)]
	c.w = w
	c.state = stDialing
	c.buf = c.buf[:0]
	c.subs = c.subs[:0]
	c.gotClose = false
	c.started = time.Now()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		w.st.connectErrors.Add(1)
		w.st.bump(&w.st.status, "socket:"+errName(err))
		<-lg.inflight
		lg.retry(c)
		return
	}
	// Let connect pick the port, so one source address is not limited to one bind per
	// port across all destinations.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	if c.stalled {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, lg.cfg.stallRcvBuf)
	}
	src := lg.cfg.srcs[c.id%len(lg.cfg.srcs)]
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src}); err != nil {
		unix.Close(fd)
		w.st.connectErrors.Add(1)
		w.st.bump(&w.st.status, "bind:"+errName(err))
		<-lg.inflight
		lg.retry(c)
		return
	}
	var dst [4]byte
	copy(dst[:], net.ParseIP(lg.cfg.host).To4())
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: lg.cfg.port, Addr: dst})
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		w.st.connectErrors.Add(1)
		w.st.bump(&w.st.status, "connect:"+errName(err))
		<-lg.inflight
		lg.retry(c)
		return
	}
	c.fd = fd
	lg.table[fd].Store(c)
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		lg.table[fd].Store(nil)
		unix.Close(fd)
		w.st.connectErrors.Add(1)
		<-lg.inflight
		lg.retry(c)
	}
}

func errName(err error) string {
	if e, ok := err.(syscall.Errno); ok {
		if s := unix.ErrnoName(e); s != "" {
			return s
		}
	}
	return err.Error()
}

// rampRetries bounds the attempts of a connection that never opened when reconnecting
// is off.
const rampRetries = 5

// retry schedules a new attempt for c, or gives it up when reconnecting is off.
func (lg *loadgen) retry(c *conn) {
	if lg.stopping.Load() || (lg.cfg.reconnect == "off" && (c.opened || c.attempt >= rampRetries)) {
		lg.pending.Add(-1)
		return
	}
	var d time.Duration
	switch {
	case lg.cfg.reconnect == "off":
		// A connection of the initial ramp that failed (a full accept queue, a 503) is
		// tried again a few times, as any client would; the failure stays counted.
		d = time.Duration(mrand.Int64N(int64(50*time.Millisecond<<c.attempt) + 1))
	case lg.cfg.reconnect == "fixed":
		d = lg.cfg.delay
	case c.drained:
		// The gateway spread after_ms over its clients already (PROTOCOL.md: close,
		// wait after_ms, reconnect), as the shipped clients do.
		d = time.Duration(c.afterMs) * time.Millisecond
		c.drained, c.afterMs = false, 0
	default:
		if c.attempt == 0 {
			d = time.Duration(mrand.Int64N(int64(lg.cfg.spread) + 1))
		} else {
			ceil := lg.cfg.delay << min(c.attempt, 20)
			if ceil > lg.cfg.backoffCap || ceil <= 0 {
				ceil = lg.cfg.backoffCap
			}
			d = time.Duration(mrand.Int64N(int64(ceil) + 1))
		}
	}
	c.attempt++
	// A timer is not a goroutine until it fires; the dialer does the work.
	time.AfterFunc(d, func() { lg.dialq <- c })
}

func (w *worker) loop() {
	evs := make([]unix.EpollEvent, 512)
	lg := w.lg
	for !lg.stopping.Load() {
		n, err := unix.EpollWait(w.epfd, evs, 100)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			fatal("epoll_wait: %v", err)
		}
		var now int64
		for i := 0; i < n; i++ {
			fd := int(evs[i].Fd)
			c := lg.table[fd].Load()
			if c == nil || c.fd != fd || c.state == stClosed {
				continue
			}
			ev := evs[i].Events
			if c.state == stDialing {
				if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
					continue
				}
				w.connected(c)
				continue
			}
			if ev&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
				if now == 0 {
					now = time.Now().UnixMicro()
				}
				w.readable(c, now)
			}
		}
	}
}

func (w *worker) connected(c *conn) {
	lg := w.lg
	if e, _ := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR); e != 0 {
		w.st.connectErrors.Add(1)
		w.st.bump(&w.st.status, "connect:"+errName(syscall.Errno(e)))
		w.drop(c, false)
		return
	}
	var kb [16]byte
	_, _ = rand.Read(kb[:])
	c.key = base64.StdEncoding.EncodeToString(kb[:])
	target := lg.cfg.path
	if !lg.cfg.subscribeByOp {
		target += "?match=" + c.match
	}
	req := "GET " + target + " HTTP/1.1\r\nHost: " + lg.cfg.host + ":" + strconv.Itoa(lg.cfg.port) +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + c.key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := unix.Write(c.fd, []byte(req)); err != nil {
		w.st.connectErrors.Add(1)
		w.st.bump(&w.st.status, "write:"+errName(err))
		w.drop(c, false)
		return
	}
	c.state = stHandshake
	_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)})
}

// drop closes c before it was open (a failed connect or handshake) and maybe retries.
func (w *worker) drop(c *conn, wasOpen bool) {
	lg := w.lg
	w.lg.table[c.fd].Store(nil)
	unix.Close(c.fd)
	prev := c.state
	c.state = stClosed
	if wasOpen {
		lg.open.Add(-1)
		lg.pending.Add(1)
		lg.stormClose()
	} else if prev != stOpen {
		<-lg.inflight
	}
	lg.retry(c)
}

func (lg *loadgen) stormClose() {
	lg.stormMu.Lock()
	if lg.stormArmed && lg.storm.FirstCloseUs == 0 {
		lg.storm.FirstCloseUs = time.Now().UnixMicro()
	}
	lg.stormMu.Unlock()
}

func (w *worker) readable(c *conn, now int64) {
	for {
		n, err := unix.Read(c.fd, w.rbuf)
		if n > 0 {
			w.consume(c, w.rbuf[:n], now)
			if c.state == stClosed {
				return
			}
			if n < len(w.rbuf) {
				return
			}
			continue
		}
		if err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		// EOF or reset.
		if c.state == stOpen {
			if !c.gotClose {
				w.st.bump(&w.st.closes, "eof")
			}
			w.drop(c, true)
		} else {
			w.st.failedHandshakes.Add(1)
			w.st.bump(&w.st.status, "eof")
			w.drop(c, false)
		}
		return
	}
}

func (w *worker) consume(c *conn, data []byte, now int64) {
	lg := w.lg
	if c.state == stHandshake {
		c.buf = append(c.buf, data...)
		end := bytes.Index(c.buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(c.buf) > 8192 {
				w.st.failedHandshakes.Add(1)
				w.st.bump(&w.st.status, "toolong")
				w.drop(c, false)
			}
			return
		}
		status := parseStatus(c.buf)
		if status != 101 {
			w.st.failedHandshakes.Add(1)
			w.st.bump(&w.st.status, strconv.Itoa(status))
			w.drop(c, false)
			return
		}
		rest := c.buf[end+4:]
		c.state = stOpen
		c.opened = true
		c.attempt = 0
		<-lg.inflight
		lg.open.Add(1)
		lg.pending.Add(-1)
		w.st.connected.Add(1)
		lg.stormOpen()
		if lg.cfg.proto == "centrifuge" {
			w.sendText(c, []byte(`{"id":1,"connect":{}}`))
		} else if lg.cfg.subscribeByOp {
			w.sendText(c, []byte(`{"op":"subscribe","match":"`+c.match+`"}`))
		}
		if c.stalled {
			// Stop reading for good: the server's frames pile up in its own buffers.
			lg.stalled.Add(1)
			_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: 0, Fd: int32(c.fd)})
			c.buf = nil
			return
		}
		if len(rest) == 0 {
			c.buf = c.buf[:0]
			return
		}
		tail := append([]byte(nil), rest...)
		c.buf = c.buf[:0]
		w.frames(c, tail, now)
		return
	}
	w.frames(c, data, now)
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

func parseStatus(b []byte) int {
	// "HTTP/1.1 101 Switching Protocols"
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 || len(b) < sp+4 {
		return 0
	}
	v, _ := strconv.Atoi(string(b[sp+1 : sp+4]))
	return v
}

// frames parses every complete frame of c.buf+data and keeps the rest.
func (w *worker) frames(c *conn, data []byte, now int64) {
	b := data
	if len(c.buf) > 0 {
		c.buf = append(c.buf, data...)
		b = c.buf
	}
	for len(b) >= 2 && c.state == stOpen {
		op := b[0] & 0x0f
		fin := b[0]&0x80 != 0
		masked := b[1]&0x80 != 0
		l := uint64(b[1] & 0x7f)
		h := 2
		switch l {
		case 126:
			if len(b) < 4 {
				goto partial
			}
			l = uint64(b[2])<<8 | uint64(b[3])
			h = 4
		case 127:
			if len(b) < 10 {
				goto partial
			}
			l = 0
			for i := 2; i < 10; i++ {
				l = l<<8 | uint64(b[i])
			}
			h = 10
		}
		if masked {
			h += 4
		}
		if l > 16<<20 {
			w.st.protoErrors.Add(1)
			w.closeOpen(c, 1009)
			return
		}
		if uint64(len(b)) < uint64(h)+l {
			goto partial
		}
		payload := b[h : h+int(l)]
		if masked {
			key := b[h-4 : h]
			for i := range payload {
				payload[i] ^= key[i&3]
			}
		}
		b = b[h+int(l):]
		if !fin || op == 0 {
			// The contract says unfragmented; count and skip.
			w.st.protoErrors.Add(1)
			continue
		}
		switch op {
		case 1:
			if w.lg.cfg.proto == "centrifuge" {
				w.centrifuge(c, payload, now)
			} else {
				w.message(c, payload, now)
			}
		case 2:
			w.st.recv[rBinary].Add(1)
		case 8:
			code := 1005
			if len(payload) >= 2 {
				code = int(payload[0])<<8 | int(payload[1])
			}
			c.gotClose = true
			w.st.bump(&w.st.closes, strconv.Itoa(code))
			w.closeOpen(c, code)
			return
		case 9:
			w.st.recv[rPing].Add(1)
			w.send(c, 0xA, payload)
		}
	}
	if c.state != stOpen {
		return
	}
	if len(b) == 0 {
		if cap(c.buf) > 4096 {
			c.buf = nil
		} else {
			c.buf = c.buf[:0]
		}
		return
	}
partial:
	if len(c.buf) > 0 {
		// b aliases c.buf: move the tail to the front.
		n := copy(c.buf, b)
		c.buf = c.buf[:n]
	} else {
		c.buf = append(c.buf[:0], b...)
	}
}

// closeOpen answers a close (or closes for a protocol error) and drops the connection.
func (w *worker) closeOpen(c *conn, code int) {
	if code != 1005 && code != 1006 {
		w.send(c, 0x8, []byte{byte(code >> 8), byte(code)})
	} else {
		w.send(c, 0x8, nil)
	}
	w.drop(c, true)
}

// message handles one crease frame. It finds the few fields it needs by scanning instead
// of decoding JSON: the gateway's frames put them at the top level.
func (w *worker) message(c *conn, p []byte, now int64) {
	typ := strField(p, `"type":"`)
	switch string(typ) {
	case "delta":
		w.st.recv[rDelta].Add(1)
		w.delta(c, p, now)
	case "event":
		w.st.recv[rEvent].Add(1)
	case "hello":
		w.st.recv[rHello].Add(1)
	case "subscribed":
		w.st.recv[rSubscribed].Add(1)
	case "resync":
		w.st.recv[rResync].Add(1)
		w.st.bump(&w.st.resyncs, string(strField(p, `"reason":"`)))
		m := strField(p, `"match":"`)
		for i := range c.subs {
			if c.subs[i].match == string(m) {
				// After a resync any seq is acceptable as the new base.
				c.subs[i].last = 0
			}
		}
	case "reconnect":
		w.st.recv[rReconnect].Add(1)
		if w.lg.cfg.reconnect == "jitter" {
			// Protocol clients close at once and come back after after_ms; fixed-mode
			// clients ignore it and wait for the server's close.
			c.afterMs = int64(numField(p, `"after_ms":`))
			c.drained = true
			c.gotClose = true
			w.st.bump(&w.st.closes, "reconnect")
			w.closeOpen(c, 1000)
		}
	case "error":
		w.st.recv[rError].Add(1)
	default:
		w.st.recv[rOther].Add(1)
	}
}

func (w *worker) delta(c *conn, p []byte, now int64) {
	m := strField(p, `"match":"`)
	seq := numField(p, `"seq":`)
	if ts := int64(numField(p, `"ts":`)); ts > 0 {
		lat := now - ts
		if lat < 1 {
			lat = 1
		}
		_ = w.hist.RecordValue(lat)
	}
	for i := range c.subs {
		s := &c.subs[i]
		if s.match != string(m) {
			continue
		}
		switch {
		case s.last == 0 || seq == s.last+1:
		case seq <= s.last:
			w.st.dups.Add(1)
			return
		default:
			w.st.gaps.Add(1)
			w.st.gapMissing.Add(int64(seq - s.last - 1))
		}
		s.last = seq
		return
	}
	c.subs = append(c.subs, sub{match: string(m), last: seq})
}

// centrifuge handles one frame of centrifuge's JSON protocol: newline-separated replies.
func (w *worker) centrifuge(c *conn, p []byte, now int64) {
	for len(p) > 0 {
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		switch {
		case len(line) == 0:
		case string(line) == "{}":
			// A server ping of protocol v2: answer with an empty command.
			w.st.recv[rPing].Add(1)
			w.sendText(c, []byte("{}"))
		case bytes.Contains(line, []byte(`"pub":`)):
			if bytes.Contains(line, []byte(`"type":"delta"`)) {
				w.st.recv[rDelta].Add(1)
				w.delta(c, line, now)
			} else {
				w.st.recv[rEvent].Add(1)
			}
		case bytes.Contains(line, []byte(`"connect":`)):
			w.st.recv[rHello].Add(1)
			if bytes.Contains(line, []byte(`"subs":`)) {
				w.st.recv[rSubscribed].Add(1)
			}
		case bytes.Contains(line, []byte(`"error":`)):
			w.st.recv[rError].Add(1)
		case bytes.Contains(line, []byte(`"disconnect":`)):
			w.st.bump(&w.st.closes, "push-disconnect")
		default:
			w.st.recv[rOther].Add(1)
		}
	}
}

func strField(p []byte, key string) []byte {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return nil
	}
	p = p[i+len(key):]
	j := bytes.IndexByte(p, '"')
	if j < 0 {
		return nil
	}
	return p[:j]
}

func numField(p []byte, key string) uint64 {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return 0
	}
	var v uint64
	for _, ch := range p[i+len(key):] {
		if ch < '0' || ch > '9' {
			break
		}
		v = v*10 + uint64(ch-'0')
	}
	return v
}

func (w *worker) sendText(c *conn, p []byte) { w.send(c, 0x1, p) }

// send writes one masked client frame; client frames here are tiny, so a short write is
// treated as lost rather than buffered.
func (w *worker) send(c *conn, op byte, p []byte) {
	if len(p) > 125 {
		p = p[:125]
	}
	var f [2 + 4 + 125]byte
	f[0] = 0x80 | op
	f[1] = 0x80 | byte(len(p))
	w.rnd ^= w.rnd << 13
	w.rnd ^= w.rnd >> 7
	w.rnd ^= w.rnd << 17
	k := bits.RotateLeft64(w.rnd, 7)
	key := [4]byte{byte(k), byte(k >> 8), byte(k >> 16), byte(k >> 24)}
	copy(f[2:6], key[:])
	for i, ch := range p {
		f[6+i] = ch ^ key[i&3]
	}
	_, _ = unix.Write(c.fd, f[:6+len(p)])
}
