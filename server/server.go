package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
	"crease/codec"
	"crease/shard"
	"crease/wire"
)

// Server is one gateway.
type Server struct {
	opts Options
	log  *slog.Logger
	m    *metrics
	reg  *prometheus.Registry // private registry when none was given

	upgrader codec.Upgrader
	ping     *shard.Frame
	hello    *shard.Frame // the same for every connection: encoded once

	// storeWarn throttles the HTTP listener's warnings of a store that does not answer
	// to one per storeWarnEvery, whatever the request rate.
	storeWarn logThrottle

	engine   gnet.Engine
	engineUp chan struct{}
	loopsUp  chan struct{}
	loopsOK  sync.Once
	gnetDir  string
	gnetErr  chan error

	shardsMu sync.Mutex // creating a shard (shardFor)
	shards   [maxLoops]atomic.Pointer[shard.Shard]
	byLoop   atomic.Pointer[map[gnet.EventLoop]*shard.Shard] // replaced, never modified
	nShards  atomic.Int32
	scratch  [maxLoops]loopScratch // by shard index, each used only on its loop

	dispatch *dispatcher
	recovery *recoverer // nil when Options.Recovery.Disabled

	ln       net.Listener
	httpLn   net.Listener
	httpSrv  *http.Server
	gz       gzipCache // compressed snapshots and page files (gzip.go)
	admit    *admission
	open     atomic.Int64 // accepted and not yet closed (handshakes included)
	draining atomic.Bool
	stopping atomic.Bool

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	done     chan struct{}
}

// New validates opts and returns a server that is not yet listening.
func New(opts Options) (*Server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:      o,
		log:       o.Logger,
		storeWarn: logThrottle{interval: storeWarnEvery},
		engineUp:  make(chan struct{}),
		loopsUp:   make(chan struct{}),
		gnetErr:   make(chan error, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		ping:      shard.ControlRaw(codec.PingFrame(nil)),
	}
	reg := o.Registerer
	if reg == nil {
		s.reg = prometheus.NewRegistry()
		reg = s.reg
	}
	if s.opts.Gatherer == nil {
		// What the metrics are registered on, when it can be gathered (a Registry).
		s.opts.Gatherer = prometheus.Gatherers{}
		if g, ok := reg.(prometheus.Gatherer); ok {
			s.opts.Gatherer = g
		}
	}
	s.byLoop.Store(&map[gnet.EventLoop]*shard.Shard{})
	if s.m, err = newMetrics(reg); err != nil {
		return nil, fmt.Errorf("server: registering metrics: %w", err)
	}
	s.upgrader = codec.Upgrader{Path: DefaultWSPath, ValidMatch: bus.ValidMatchID, Check: s.checkHandshake,
		PlainBody: "crease: WebSocket endpoint is " + DefaultWSPath + "; snapshots, metrics and the page are on the HTTP listener\n"}
	s.hello = shard.ControlText(wire.Hello(o.Node, o.Shard.Heartbeat))
	if !o.Recovery.Disabled {
		if s.recovery, err = newRecoverer(s, reg); err != nil {
			return nil, fmt.Errorf("server: registering metrics: %w", err)
		}
	}
	s.dispatch = newDispatcher(s)
	s.admit = newAdmission(o.HandshakeRate, o.HandshakeBurst)
	return s, nil
}

// Start binds both listeners, starts the event loops, the accept loop, the bus and the
// HTTP server, and returns. It fails if a listener cannot be bound.
func (s *Server) Start(ctx context.Context) error {
	ln, err := s.wsListener()
	if err != nil {
		return fmt.Errorf("server: listening for WebSocket on %s: %w", s.opts.WSAddr, err)
	}
	httpLn, err := s.httpListener()
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: listening for HTTP on %s: %w", s.opts.HTTPAddr, err)
	}
	s.ln, s.httpLn = ln, httpLn

	// gnet needs a listener of its own; connections never arrive there (crease accepts
	// on s.ln and enrolls them), so it is a private Unix socket.
	dir, err := os.MkdirTemp("", "crease-gnet-")
	if err != nil {
		ln.Close()
		httpLn.Close()
		return err
	}
	s.gnetDir = dir
	go func() {
		err := gnet.Run(&handler{s: s}, "unix://"+filepath.Join(dir, "loops.sock"),
			gnet.WithNumEventLoop(s.opts.Loops),
			gnet.WithLoadBalancing(gnet.SourceAddrHash),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{s.log}),
		)
		s.gnetErr <- err
	}()
	select {
	case <-s.engineUp:
	case err := <-s.gnetErr:
		ln.Close()
		httpLn.Close()
		return fmt.Errorf("server: starting event loops: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	// OnBoot runs before gnet has registered its loops; a connection to gnet's own
	// socket reaching OnOpen proves the loops run, so Register is safe from then on.
	probe, err := net.Dial("unix", filepath.Join(dir, "loops.sock"))
	if err == nil {
		select {
		case <-s.loopsUp:
		case <-time.After(5 * time.Second):
			err = errors.New("event loops did not start")
		}
		probe.Close()
	}
	if err == nil {
		err = s.reachEveryLoop()
	}
	if err != nil {
		s.engine.Stop(context.Background())
		ln.Close()
		httpLn.Close()
		return fmt.Errorf("server: starting event loops: %w", err)
	}

	if err := s.opts.Bus.Start(ctx, s.dispatch); err != nil {
		s.engine.Stop(context.Background())
		ln.Close()
		httpLn.Close()
		return fmt.Errorf("server: starting bus: %w", err)
	}
	s.recovery.start()

	// A slow or idle client holds a descriptor: every read is bounded.
	s.httpSrv = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: min(5*time.Second, s.opts.HTTPReadTimeout),
		ReadTimeout: s.opts.HTTPReadTimeout, IdleTimeout: s.opts.HTTPIdleTimeout,
		// net/http's own lines (an accept error such as EMFILE, a TLS or header error)
		// go to the gateway's log, in its format, not to stderr as plain text.
		ErrorLog: slog.NewLogLogger(s.log.With("component", "http").Handler(), slog.LevelWarn)}
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("HTTP listener stopped", "err", err)
		}
	}()
	go func() { defer s.wg.Done(); s.acceptLoop() }()
	go func() { defer s.wg.Done(); s.tickLoop() }()
	limit := descriptorLimit()
	s.log.Info("gateway listening", "ws", "ws://"+ln.Addr().String()+DefaultWSPath,
		"http", "http://"+httpLn.Addr().String(), "loops", s.opts.Loops, "max_conns", s.opts.MaxConns,
		"fd_limit", limit, "node", s.opts.Node)
	if limit > 0 && s.opts.MaxConns > limit-DefaultDescriptorReserve {
		s.log.Warn("max connections above what the descriptor limit leaves: past it accepts fail with EMFILE; raise LimitNOFILE (ulimit -n) or lower --max-conns",
			"max_conns", s.opts.MaxConns, "fd_limit", limit, "reserve", DefaultDescriptorReserve)
	}
	return nil
}

// WSAddr returns the bound WebSocket address.
func (s *Server) WSAddr() net.Addr { return s.ln.Addr() }

// HTTPAddr returns the bound HTTP address.
func (s *Server) HTTPAddr() net.Addr { return s.httpLn.Addr() }

// Done is closed when the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Ready reports whether the gateway accepts connections: not draining and the bus up.
func (s *Server) Ready() bool {
	return !s.draining.Load() && !s.stopping.Load() && s.opts.Bus.Ready()
}

// Conns returns the open upgraded connections over all loops.
func (s *Server) Conns() int64 {
	var n int64
	for i := range s.shards {
		if sh := s.shards[i].Load(); sh != nil {
			n += sh.Conns()
		}
	}
	return n
}

func (s *Server) connClosed(_ *shard.Conn, reason wire.CloseReason) {
	s.m.disconnects.WithLabelValues(reason.String()).Inc()
}

// tickLoop posts a tick, which doubles as the loop-lag probe, to every loop.
func (s *Server) tickLoop() {
	t := time.NewTicker(s.opts.TickInterval)
	defer t.Stop()
	viewers := time.NewTicker(s.opts.ViewerInterval)
	defer viewers.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.recovery.tick(now)
			s.eachShard(func(sh *shard.Shard) {
				posted := sh.Clock()
				onLoop(sh, func() { sh.Probe(posted); sh.Tick(s.ping) })
			})
		case <-viewers.C:
			s.reportViewers()
		}
	}
}

// viewerReporter is implemented by buses that aggregate viewer counts.
type viewerReporter interface{ SetViewers(map[string]int) }

func (s *Server) reportViewers() {
	vr, ok := s.opts.Bus.(viewerReporter)
	if !ok {
		return
	}
	n := int(s.nShards.Load())
	parts := make(chan map[string]int, n)
	s.eachShard(func(sh *shard.Shard) {
		onLoop(sh, func() {
			m := make(map[string]int)
			sh.Counts(m)
			parts <- m
		})
	})
	total := make(map[string]int)
	timeout := time.After(time.Second)
	for i := 0; i < n; i++ {
		select {
		case m := <-parts:
			for k, v := range m {
				total[k] += v
			}
		case <-timeout:
			return
		}
	}
	vr.SetViewers(total)
}

// Drain starts a graceful drain: /readyz answers 503, new handshakes get 503 with
// Retry-After (or wait for a successor, see drain.go), every connection gets `reconnect`
// with after_ms spread over the drain window and is closed with 1012: at its after_ms
// in a handover (ReusePort); within the first half of Options.RestartGap otherwise,
// with after_ms shifted past the gap, so that a gateway restarted in place has its
// successor listening when its clients return. The server stops when all are closed or
// at the hard deadline (the last close + DrainGrace), or when ctx is done.
func (s *Server) Drain(ctx context.Context) {
	if !s.draining.CompareAndSwap(false, true) {
		return
	}
	s.m.draining.Set(1)
	plan := s.drainPlan()
	s.log.Info("draining", "mode", plan.mode, "reconnect_from", plan.gap, "reconnect_over", plan.window,
		"closes_within", plan.closeWithin, "connections", s.Conns())
	if plan.closeWS {
		s.ln.Close()
	}
	if plan.closeHTTP {
		s.httpLn.Close()
	}
	s.eachShard(func(sh *shard.Shard) {
		onLoop(sh, func() { sh.StartDrainAfter(plan.gap, plan.window, plan.closeWithin) })
	})
	deadline := time.NewTimer(plan.closeWithin + s.opts.DrainGrace)
	defer deadline.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for s.Conns() > 0 {
		select {
		case <-ctx.Done():
			s.Shutdown()
			return
		case <-deadline.C:
			s.log.Warn("drain deadline passed", "left", s.Conns())
			s.Shutdown()
			return
		case <-poll.C:
		}
	}
	s.Shutdown()
}

// Shutdown closes every connection at once (1001), stops the loops, the bus and the
// listeners. It is what a second signal does during a drain.
func (s *Server) Shutdown() {
	s.stopOnce.Do(func() {
		s.stopping.Store(true)
		close(s.stop)
		if s.ln != nil {
			s.ln.Close()
		}
		var wg sync.WaitGroup
		s.eachShard(func(sh *shard.Shard) {
			wg.Add(1)
			onLoop(sh, func() { defer wg.Done(); sh.CloseAll(wire.ReasonShutdown) })
		})
		waitTimeout(&wg, 2*time.Second)
		// Give gnet a moment to run the queued closes, which write the close frames.
		deadline := time.Now().Add(time.Second)
		for s.Conns() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		// Engine.Stop notices the loops are down only at its next 500 ms poll; gnet.Run
		// returns as soon as they are, and a restart in place waits on this exit.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		go func() { _ = s.engine.Stop(ctx) }()
		select {
		case <-s.gnetErr:
		case <-ctx.Done():
		}
		cancel()
		s.recovery.stop()
		_ = s.opts.Bus.Close()
		if s.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.httpSrv.Shutdown(ctx)
			cancel()
		}
		s.wg.Wait()
		os.RemoveAll(s.gnetDir)
		s.log.Info("gateway stopped")
		close(s.done)
	})
	<-s.done
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(d):
	}
}

// errClosed is returned by accept after Shutdown.
var errClosed = errors.New("server: closed")
