package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"crease/bus"
	busredis "crease/bus/redis"
	"crease/server"
	"crease/shard"
	"crease/web"
)

// gatewayFlags are the flags of a gateway, shared by serve and demo.
type gatewayFlags struct {
	wsAddr, httpAddr string
	loops            int
	origins          listFlag
	jwtSecret        string
	node             string
	publicWSURL      string
	budget           int
	sendBuffer       int
	stallLimit       time.Duration
	cutLimit         time.Duration
	closeLinger      time.Duration
	maxSubs          int
	opRate           float64
	opBurst          int
	heartbeat        time.Duration
	handshakeTimeout time.Duration
	shedLag          time.Duration
	maxConns         int
	handshakeRate    float64
	handshakeBurst   int
	drainWindow      time.Duration
	drainGrace       time.Duration
	restartGap       time.Duration
	reusePort        bool
	pprof            bool
	replayRate       float64
	noReplay         bool
	recoveryWait     time.Duration
	catchUpBytes     int
	catchUpWork      int
	log              logFlags
}

func (g *gatewayFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.wsAddr, "ws-addr", server.DefaultWSAddr, "WebSocket listen address (path "+server.DefaultWSPath+")")
	fs.StringVar(&g.httpAddr, "http-addr", server.DefaultHTTPAddr, "HTTP listen address: snapshots, /metrics, /healthz, /readyz, the page")
	fs.IntVar(&g.loops, "loops", 0, "event loops (shards); 0 means the number of cores")
	fs.Var(&g.origins, "allowed-origins", "comma-separated allowed Origin values for browser handshakes; empty allows any")
	fs.StringVar(&g.jwtSecret, "jwt-secret", "", "HS256 secret; when set every handshake needs a JWT as the subprotocol bearer.JWT or in ?token= (exp required, optional matches claim), and the HTTP API needs it as Authorization: Bearer JWT or ?token=")
	fs.StringVar(&g.node, "node", "", "gateway name sent in hello; default the host name")
	fs.StringVar(&g.publicWSURL, "public-ws-url", "", "WebSocket URL the page is told (behind a load balancer); default same host, WebSocket port")
	fs.IntVar(&g.budget, "budget", shard.DefaultBudget, "per-connection outbound budget in bytes (crease's queue + gnet's buffer)")
	fs.IntVar(&g.sendBuffer, "send-buffer", shard.DefaultSendBuffer, "SO_SNDBUF of each connection in bytes; -1 keeps the kernel's autotuning (up to tcp_wmem max, MBs per stalled peer)")
	fs.DurationVar(&g.stallLimit, "stall-limit", shard.DefaultStallLimit, "a connection whose socket stays full this long has its deltas replaced by resync")
	fs.DurationVar(&g.cutLimit, "cut-limit", shard.DefaultCutLimit, "a connection whose socket stays full this long is closed with 4008")
	fs.DurationVar(&g.closeLinger, "close-linger", shard.DefaultCloseLinger, "a connection cut as a slow consumer keeps its socket this long for the client to read the 4008 close frame, then is reset")
	fs.IntVar(&g.maxSubs, "max-subscriptions", shard.DefaultMaxSubscriptions, "subscriptions per connection")
	fs.Float64Var(&g.opRate, "op-rate", shard.DefaultOpRate, "client ops (subscribe, unsubscribe, auth) per second a connection may sustain (token bucket); an op over it is answered error rate_limited")
	fs.IntVar(&g.opBurst, "op-burst", 0, "client ops a connection may send at once; 0 means twice --max-subscriptions. A connection that sends another burst's worth beyond its allowance is closed with 1008")
	fs.DurationVar(&g.heartbeat, "heartbeat", shard.DefaultHeartbeat, "ping interval, whole seconds from 1s to 1h; a connection silent for 3 intervals is closed with 4000")
	fs.DurationVar(&g.handshakeTimeout, "handshake-timeout", shard.DefaultHandshakeTimeout, "a handshake not complete within this is closed (slowloris)")
	fs.DurationVar(&g.shedLag, "shed-lag", shard.DefaultShedLag, "a loop lagging more than this drops low-priority events at dispatch")
	fs.IntVar(&g.maxConns, "max-conns", 0, "maximum open connections; 0 means RLIMIT_NOFILE minus a reserve")
	fs.Float64Var(&g.handshakeRate, "handshake-rate", server.DefaultHandshakeRate, "handshakes admitted per second (token bucket); the excess gets 503 + Retry-After")
	fs.IntVar(&g.handshakeBurst, "handshake-burst", server.DefaultHandshakeBurst, "token bucket burst for handshakes")
	fs.DurationVar(&g.drainWindow, "drain-window", server.DefaultDrainWindow, "on SIGTERM, reconnect hints and closes are spread over this window")
	fs.DurationVar(&g.drainGrace, "drain-grace", server.DefaultDrainGrace, "after the drain window, the hard deadline to exit")
	fs.DurationVar(&g.restartGap, "restart-gap", server.DefaultRestartGap, "on SIGTERM without --reuse-port (a restart in place: stop, then start): close the connections within half of this and tell clients to come back after it, spread over --drain-window, when the new process listens; 0 keeps each connection until its turn in the window instead (clients with other gateways to go to)")
	fs.BoolVar(&g.reusePort, "reuse-port", false, "bind with SO_REUSEPORT so that a new crease can start on the same ports before this one drains (restart without refusals); a draining gateway then closes its listeners at once")
	fs.BoolVar(&g.pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/ on the HTTP listener")
	fs.Float64Var(&g.replayRate, "replay-rate", server.DefaultReplayRate, "history reads per second for subscribes with since (token bucket, burst the same); the subscribes a read over it would serve are answered recovered:false. Subscribes answered from the deltas the gateway keeps cost none")
	fs.BoolVar(&g.noReplay, "no-replay", false, "answer every subscribe with since recovered:false (no history replay)")
	fs.IntVar(&g.catchUpBytes, "catchup-bytes", 0, "largest patch of a catch-up delta composed for one ?catchup=1 connection, at most --budget; 0 means 16 KiB (or --budget if smaller). A larger composition gets resync")
	fs.IntVar(&g.catchUpWork, "catchup-work", shard.DefaultCatchUpWork, "patch bytes an event loop composes into catch-up deltas per tick (50 ms); past it, resync")
	fs.DurationVar(&g.recoveryWait, "recovery-wait", shard.DefaultRecoveryWait, "a subscribe with since whose history answer takes longer is answered recovered:false")
	g.log.register(fs)
}

func (g *gatewayFlags) options(log *slog.Logger, b bus.Bus, reg *prometheus.Registry) server.Options {
	return server.Options{
		WSAddr:         g.wsAddr,
		HTTPAddr:       g.httpAddr,
		Loops:          g.loops,
		Bus:            b,
		Registerer:     reg,
		Gatherer:       reg,
		Logger:         log,
		Node:           g.node,
		AllowedOrigins: g.origins,
		JWTSecret:      []byte(g.jwtSecret),
		MaxConns:       g.maxConns,
		HandshakeRate:  g.handshakeRate,
		HandshakeBurst: g.handshakeBurst,
		DrainWindow:    g.drainWindow,
		DrainGrace:     g.drainGrace,
		RestartGap:     offIfZero(g.restartGap),
		ReusePort:      g.reusePort,
		PublicWSURL:    g.publicWSURL,
		Page:           web.Handler(),
		Pprof:          g.pprof,
		Recovery:       server.RecoveryOptions{Disabled: g.noReplay, ReplayRate: g.replayRate},
		Shard: shard.Options{
			Budget:           g.budget,
			SendBuffer:       g.sendBuffer,
			StallLimit:       g.stallLimit,
			CutLimit:         g.cutLimit,
			CloseLinger:      g.closeLinger,
			MaxSubscriptions: g.maxSubs,
			OpRate:           g.opRate,
			OpBurst:          g.opBurst,
			Heartbeat:        g.heartbeat,
			HandshakeTimeout: g.handshakeTimeout,
			ShedLag:          g.shedLag,
			RecoveryWait:     g.recoveryWait,
			CatchUpBytes:     g.catchUpBytes,
			CatchUpWork:      g.catchUpWork,
		},
	}
}

// offIfZero maps a flag's 0 ("off") to the negative value the server's options take
// for off (their 0 means the default).
func offIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// validate refuses the negative durations that the server and shard options would
// otherwise take silently (zero means the default there, a negative value is a typo).
func (g *gatewayFlags) validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"handshake-timeout", g.handshakeTimeout}, {"shed-lag", g.shedLag}, {"drain-grace", g.drainGrace}, {"close-linger", g.closeLinger},
		{"recovery-wait", g.recoveryWait}, {"drain-window", g.drainWindow}, {"restart-gap", g.restartGap}, {"stall-limit", g.stallLimit}, {"cut-limit", g.cutLimit}} {
		if d.v < 0 {
			return fmt.Errorf("--%s must not be negative (got %v)", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    float64
	}{{"budget", float64(g.budget)}, {"max-conns", float64(g.maxConns)}, {"handshake-rate", g.handshakeRate}, {"handshake-burst", float64(g.handshakeBurst)},
		{"max-subscriptions", float64(g.maxSubs)}, {"catchup-bytes", float64(g.catchUpBytes)}, {"catchup-work", float64(g.catchUpWork)}, {"loops", float64(g.loops)}} {
		if n.v < 0 {
			return fmt.Errorf("--%s must not be negative (got %v; 0 means the default)", n.name, n.v)
		}
	}
	if g.heartbeat%time.Second != 0 || g.heartbeat < time.Second || g.heartbeat > shard.MaxHeartbeat {
		return fmt.Errorf("--heartbeat must be a whole number of seconds from 1s to 1h (got %v): hello announces it as heartbeat_s", g.heartbeat)
	}
	if g.replayRate <= 0 {
		return fmt.Errorf("--replay-rate must be > 0 (got %v); --no-replay turns replay off", g.replayRate)
	}
	if g.opRate <= 0 || g.opBurst < 0 {
		return fmt.Errorf("--op-rate must be > 0 and --op-burst not negative (got %v, %d)", g.opRate, g.opBurst)
	}
	return nil
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// historyFlags bound the per-match history of recent deltas a publisher keeps for
// replay (crease:{ID}:hist, or the embedded bus's).
type historyFlags struct {
	deltas int
	age    time.Duration
	bytes  int
}

func (h *historyFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&h.deltas, "history-deltas", bus.DefaultHistoryDeltas, "recent deltas kept per match for replay (subscribes with since); 0 keeps none")
	fs.DurationVar(&h.age, "history-age", bus.DefaultHistoryAge, "recent deltas older than this (behind the newest) are dropped from a match's history")
	fs.IntVar(&h.bytes, "history-bytes", bus.DefaultHistoryBytes, "bytes of recent deltas kept per match")
}

func (h *historyFlags) options() (bus.HistoryOptions, error) {
	if h.deltas < 0 || h.age <= 0 || h.bytes <= 0 {
		return bus.HistoryOptions{}, fmt.Errorf("--history-deltas must be ≥ 0, --history-age and --history-bytes > 0 (got %d, %v, %d)", h.deltas, h.age, h.bytes)
	}
	o := bus.HistoryOptions{MaxDeltas: h.deltas, MaxAge: h.age, MaxBytes: h.bytes}
	if h.deltas == 0 {
		o.MaxDeltas = -1 // HistoryOptions: negative keeps none
	}
	return o, nil
}

// redisFlags select the Redis bus.
type redisFlags struct {
	required bool // crease ingest: no embedded bus to fall back to
	addrs    listFlag
	cluster  bool
	sentinel string
	prefix   string
	hist     historyFlags
}

func (r *redisFlags) register(fs *flag.FlagSet) {
	r.hist.register(fs)
	empty := "empty uses the embedded in-process bus"
	if r.required {
		empty = "required"
	}
	fs.Var(&r.addrs, "redis", "Redis address host:port; with --redis-cluster seed nodes and with --redis-sentinel the sentinels, host:port[,host:port]; "+empty)
	fs.BoolVar(&r.cluster, "redis-cluster", false, "Redis Cluster: sharded pub/sub (SSUBSCRIBE/SPUBLISH)")
	fs.StringVar(&r.sentinel, "redis-sentinel", "", "Redis Sentinel: the name of the master the sentinels at --redis monitor; the bus follows it across failovers")
	fs.StringVar(&r.prefix, "redis-prefix", busredis.DefaultPrefix, "key and channel prefix")
}

// validate refuses a combination of the Redis flags that cannot mean what it says.
func (r *redisFlags) validate() error {
	switch {
	case len(r.addrs) == 0 && r.cluster:
		return errors.New("--redis-cluster needs --redis ADDR")
	case len(r.addrs) == 0 && r.sentinel != "":
		return errors.New("--redis-sentinel needs --redis SENTINEL_ADDR[,SENTINEL_ADDR]")
	case r.cluster && r.sentinel != "":
		return errors.New("--redis-sentinel and --redis-cluster exclude each other (a Redis Cluster fails over by itself)")
	case len(r.addrs) > 1 && !r.cluster && r.sentinel == "":
		// A single Redis has one address; the others would be ignored in silence, and a
		// first one that is down would leave the bus down with the rest up.
		return fmt.Errorf("--redis lists %d addresses: a single Redis takes one; a list is the seed nodes of --redis-cluster or the sentinels of --redis-sentinel MASTER", len(r.addrs))
	}
	return nil
}

func (r *redisFlags) open(log *slog.Logger, reg prometheus.Registerer, node string) (bus.Bus, error) {
	hist, err := r.hist.options()
	if err != nil {
		return nil, err
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	if len(r.addrs) == 0 {
		return bus.NewEmbeddedWith(hist), nil
	}
	return busredis.New(busredis.Options{Addrs: r.addrs, Cluster: r.cluster, Sentinel: r.sentinel, Prefix: r.prefix,
		Registerer: reg, Logger: log, NodeID: node, History: hist})
}

const serveUsage = `Runs the gateway. Without --redis it uses the embedded in-process bus (publish with
the Go API or run "crease demo"). SIGTERM or SIGINT drains: /readyz answers 503, new
handshakes get 503, every connection gets reconnect{after_ms} and is closed with 1012.
For a restart in place (the default) the connections are closed within half of
--restart-gap and after_ms falls after the gap, spread over --drain-window, when the new
process listens; with --reuse-port (a successor already listening) after_ms is spread
over the window from now and each connection closed at that time. A second signal
closes everything at once (1001). Listening sockets passed by systemd socket activation
(LISTEN_FDS; names "ws" and "http", or that order) replace --ws-addr and --http-addr and
survive the restart: connections wait for the new process instead of being refused.`

func runServe(ctx context.Context, args []string) error { return runServeWith(ctx, args, nil) }

// runServeWith is runServe with the usage and flag errors written to usageOut (nil:
// stderr).
func runServeWith(ctx context.Context, args []string, usageOut io.Writer) error {
	g, r, api, err := parseServe(args, usageOut)
	if err != nil {
		return err
	}
	log, err := g.log.logger(os.Stderr)
	if err != nil {
		return err
	}
	reg := newRegistry()
	b, err := r.open(log, reg, g.node)
	if err != nil {
		return fmt.Errorf("crease serve: %w", err)
	}
	opts := g.options(log, b, reg)
	if opts.WSListener, opts.HTTPListener, err = activationListeners(); err != nil {
		return fmt.Errorf("crease serve: socket activation: %w", err)
	}
	if opts.WSListener != nil || opts.HTTPListener != nil {
		log.Info("listening sockets inherited (socket activation)", "ws", opts.WSListener != nil, "http", opts.HTTPListener != nil)
	}
	if len(api.keys) > 0 && len(r.addrs) > 0 {
		return errors.New("crease serve: --api-key serves the publish API on the embedded bus; with Redis, run crease ingest --listen ADDR --api-key KEY")
	}
	srv, err := startGateway(ctx, "serve", opts, api, b, reg, log)
	if err != nil {
		return err
	}
	return runUntilSignal(ctx, srv, log)
}

// parseServe reads serve's flags and environment and refuses what no gateway can run
// with, before anything starts.
func parseServe(args []string, usageOut io.Writer) (g gatewayFlags, r redisFlags, api apiFlags, err error) {
	cmd := newCommand("serve", serveUsage)
	if usageOut != nil {
		cmd.fs.SetOutput(usageOut)
	}
	cmd.register(&g, &r, &api)
	if err = cmd.parse(args); err != nil {
		return
	}
	if err = g.validate(); err == nil {
		err = r.validate()
	}
	if err != nil {
		err = fmt.Errorf("crease serve: %w", err)
	}
	return
}

// startGateway adds the publish API (when api has keys) to opts and starts the gateway;
// cmd names the command in its errors.
func startGateway(ctx context.Context, cmd string, opts server.Options, api apiFlags, b bus.Bus, reg prometheus.Registerer, log *slog.Logger) (*server.Server, error) {
	var err error
	if opts.PublishAPI, err = api.handler(b, reg, log); err != nil {
		return nil, fmt.Errorf("crease %s: %w", cmd, err)
	}
	srv, err := server.New(opts)
	if err != nil {
		return nil, fmt.Errorf("crease %s: %s%w", cmd, flagsOf(err), err)
	}
	if err := srv.Start(ctx); err != nil {
		return nil, fmt.Errorf("crease %s: %w", cmd, err)
	}
	return srv, nil
}

// optionFlags names the flags behind each refusal of server.New, so that an operator
// reads which flag to fix, not an option's name.
var optionFlags = []struct {
	err   error
	flags string
}{
	{server.ErrLoops, "--loops"},
	{server.ErrDrainWindow, "--drain-window"},
	{server.ErrDrainGrace, "--drain-grace"},
	{server.ErrHandshakeCap, "--handshake-rate/--handshake-burst"},
	{server.ErrMaxConns, "--max-conns"},
	{server.ErrReusePort, "--reuse-port"},
	{shard.ErrBudget, "--budget"},
	{shard.ErrLimits, "--stall-limit/--cut-limit"},
	{shard.ErrHeartbeat, "--heartbeat"},
	{shard.ErrHandshake, "--handshake-timeout"},
	{shard.ErrMaxSubs, "--max-subscriptions"},
	{shard.ErrSendBuffer, "--send-buffer"},
	{shard.ErrLinger, "--close-linger"},
	{shard.ErrRecoveryWait, "--recovery-wait"},
	{shard.ErrCatchUp, "--catchup-bytes/--catchup-work"},
	{shard.ErrOpRate, "--op-rate/--op-burst"},
}

// flagsOf is "--flag: " for an error of server.New that optionFlags knows, else "".
func flagsOf(err error) string {
	for _, f := range optionFlags {
		if errors.Is(err, f.err) {
			return f.flags + ": "
		}
	}
	return ""
}

// runUntilSignal drains on the first signal and shuts down at once on a second.
func runUntilSignal(ctx context.Context, srv *server.Server, log *slog.Logger) error {
	select {
	case <-ctx.Done():
	case <-srv.Done():
		return nil
	}
	second := make(chan os.Signal, 1)
	signal.Notify(second, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(second)
	drained := make(chan struct{})
	go func() { srv.Drain(context.Background()); close(drained) }()
	select {
	case <-drained:
	case <-second:
		log.Warn("second signal: closing every connection now")
		srv.Shutdown()
	}
	return nil
}
