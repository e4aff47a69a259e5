package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
	"crease/shard"
)

// Defaults of Options.
const (
	DefaultWSAddr         = ":8080"
	DefaultHTTPAddr       = ":8081"
	DefaultWSPath         = "/ws"
	DefaultDrainWindow    = 10 * time.Second
	DefaultDrainGrace     = 5 * time.Second
	DefaultHandshakeRate  = 5000
	DefaultHandshakeBurst = 5000
	DefaultTickInterval   = 50 * time.Millisecond
	DefaultViewerInterval = 5 * time.Second
	// DefaultDescriptorReserve is how many descriptors below RLIMIT_NOFILE the
	// connection cap stays, for the listener, Redis, HTTP, logs and in-flight accepts.
	DefaultDescriptorReserve = 256
	maxLoops                 = 64
)

// Sentinel errors of New.
var (
	ErrNoBus        = errors.New("server: Options.Bus is required")
	ErrLoops        = errors.New("server: loops must be between 1 and 64")
	ErrDrainWindow  = errors.New("server: drain window must be > 0")
	ErrDrainGrace   = errors.New("server: drain grace must not be negative")
	ErrHandshakeCap = errors.New("server: handshake rate and burst must be > 0")
	ErrMaxConns     = errors.New("server: max connections must be > 0")
	ErrReusePort    = errors.New("server: reuse-port needs SO_REUSEPORT (a Unix system)")
)

// Options configures a Server. Zero fields take the defaults.
type Options struct {
	WSAddr   string // WebSocket listener; the path is /ws
	HTTPAddr string // HTTP listener: snapshots, health, metrics, the page
	Loops    int    // event loops (shards); default the number of cores

	Bus bus.Bus

	Registerer prometheus.Registerer // nil: a private registry
	Gatherer   prometheus.Gatherer   // served at /metrics; nil: the private registry
	Logger     *slog.Logger
	Node       string // gateway name in `hello`; default the host name

	Shard shard.Options
	// Recovery configures history replay for subscribes with `since` (recovery.go).
	Recovery RecoveryOptions

	AllowedOrigins []string // empty: any origin
	JWTSecret      []byte   // empty: no token needed

	MaxConns       int     // open connections (including handshakes); default from RLIMIT_NOFILE
	HandshakeRate  float64 // handshakes per second admitted (token bucket)
	HandshakeBurst int

	DrainWindow time.Duration // reconnect after_ms spread over it; closes paced over it
	DrainGrace  time.Duration // after the window, the hard deadline

	// ReusePort binds both listeners with SO_REUSEPORT, so that a new crease process
	// can bind the same ports while this one runs: a restart on one host without
	// refusing anyone. With it, Drain closes the listeners at once, so that the kernel
	// hands every new connection to the successor (without one, they are refused).
	ReusePort bool

	PublicWSURL string // WebSocket URL the page is told (behind a load balancer); "": same host, WS port

	Page  http.Handler // served at / (the scoreboard page); nil: a plain text answer
	Pprof bool         // net/http/pprof under /debug/pprof/
	// PublishAPI, when set, serves the writes under /v1/matches/ on the HTTP listener
	// (the publish API of package publish, with the embedded bus); nil: none.
	PublishAPI http.Handler

	TickInterval time.Duration
	// ViewerInterval is how often the per-match viewer counts are handed to a bus that
	// aggregates them (SetViewers); default DefaultViewerInterval.
	ViewerInterval time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if o.Bus == nil {
		return o, ErrNoBus
	}
	if o.WSAddr == "" {
		o.WSAddr = DefaultWSAddr
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = DefaultHTTPAddr
	}
	if o.Loops == 0 {
		o.Loops = runtime.NumCPU()
	}
	if o.Loops < 1 || o.Loops > maxLoops {
		return o, fmt.Errorf("%w (got %d)", ErrLoops, o.Loops)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if o.Node == "" {
		o.Node, _ = os.Hostname()
		if o.Node == "" {
			o.Node = "crease"
		}
	}
	var err error
	if o.Shard, err = o.Shard.WithDefaults(); err != nil {
		return o, err
	}
	if o.Recovery, err = o.Recovery.withDefaults(); err != nil {
		return o, err
	}
	if o.HandshakeRate == 0 {
		o.HandshakeRate = DefaultHandshakeRate
	}
	if o.HandshakeBurst == 0 {
		o.HandshakeBurst = DefaultHandshakeBurst
	}
	if o.HandshakeRate < 0 || o.HandshakeBurst < 0 {
		return o, ErrHandshakeCap
	}
	if o.MaxConns == 0 {
		o.MaxConns = descriptorCap()
	}
	if o.MaxConns < 0 {
		return o, ErrMaxConns
	}
	if o.ReusePort && !reusePortSupported {
		return o, ErrReusePort
	}
	if o.DrainWindow == 0 {
		o.DrainWindow = DefaultDrainWindow
	}
	if o.DrainWindow < 0 {
		return o, ErrDrainWindow
	}
	if o.DrainGrace == 0 {
		o.DrainGrace = DefaultDrainGrace
	}
	if o.DrainGrace < 0 {
		return o, ErrDrainGrace
	}
	if o.TickInterval == 0 {
		o.TickInterval = DefaultTickInterval
	}
	if o.ViewerInterval <= 0 {
		o.ViewerInterval = DefaultViewerInterval
	}
	return o, nil
}
