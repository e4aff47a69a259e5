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
	"crease/internal/reuseport"
	"crease/shard"
)

// Defaults of Options.
const (
	DefaultWSAddr         = ":8080"
	DefaultHTTPAddr       = ":8081"
	DefaultWSPath         = "/ws"
	DefaultDrainWindow    = 10 * time.Second
	DefaultDrainGrace     = 5 * time.Second
	DefaultRestartGap     = 2 * time.Second
	DefaultHandshakeRate  = 5000
	DefaultHandshakeBurst = 5000
	DefaultTickInterval   = 50 * time.Millisecond
	DefaultViewerInterval = 5 * time.Second
	// DefaultHTTPReadTimeout and DefaultHTTPIdleTimeout bound what one slow or idle
	// HTTP client holds: a whole request (headers within 5 s of it) and a kept-alive
	// connection between requests.
	DefaultHTTPReadTimeout = 30 * time.Second
	DefaultHTTPIdleTimeout = 2 * time.Minute
	// DefaultDescriptorReserve is how many descriptors below RLIMIT_NOFILE the
	// connection cap stays, for the listener, Redis, HTTP, logs and in-flight accepts.
	DefaultDescriptorReserve = 256
	maxLoops                 = 64
)

// Sentinel errors of New.
var (
	ErrNoBus        = errors.New("server: Options.Bus is required")
	ErrLoops        = errors.New("server: loops must be between 1 and 64")
	ErrDrainWindow  = errors.New("server: drain window must not be negative (0 is the default)")
	ErrDrainGrace   = errors.New("server: drain grace must not be negative")
	ErrHandshakeCap = errors.New("server: handshake rate and burst must not be negative (0 is the default)")
	ErrMaxConns     = errors.New("server: max connections must not be negative (0 derives it from RLIMIT_NOFILE)")
	ErrReusePort    = errors.New("server: reuse-port needs SO_REUSEPORT (a Unix system)")
)

// Options configures a Server. A zero field takes its default, given with each field;
// New validates the result and refuses it with the sentinel errors above.
type Options struct {
	// WSAddr is the WebSocket listener's address (the path is /ws): DefaultWSAddr.
	WSAddr string
	// HTTPAddr is the HTTP listener's address (snapshots, health, metrics, the page):
	// DefaultHTTPAddr.
	HTTPAddr string
	// Loops is the number of event loops, one shard each, 1 to 64: the number of cores.
	Loops int

	// Bus is where matches come from and snapshots are read: required (ErrNoBus).
	Bus bus.Bus

	// Registerer receives the gateway's metrics; nil means a private registry (as
	// bus/redis.Options.Registerer), which Gatherer then defaults to.
	Registerer prometheus.Registerer
	// Gatherer is what /metrics serves: nil serves what the metrics are registered on
	// (the private registry, or Registerer when it is a *prometheus.Registry; any other
	// Registerer serves nothing unless Gatherer is given).
	Gatherer prometheus.Gatherer
	// Logger receives the gateway's logs: slog.Default().
	Logger *slog.Logger
	// Node names the gateway in `hello`: the host name ("crease" without one).
	Node string

	// Shard configures every loop's shard (limits, budget, heartbeat, clock): the
	// defaults of shard.Options.
	Shard shard.Options
	// Recovery configures history replay for subscribes with `since` (recovery.go).
	Recovery RecoveryOptions

	// AllowedOrigins are the browser origins accepted (handshakes and CORS): empty
	// accepts any.
	AllowedOrigins []string
	// JWTSecret, when set, makes every handshake and API request need an HS256 token
	// signed with it: empty needs none.
	JWTSecret []byte

	// MaxConns caps open connections, handshakes included: RLIMIT_NOFILE minus
	// DefaultDescriptorReserve.
	MaxConns int
	// HandshakeRate and HandshakeBurst are the token bucket of handshakes admitted per
	// second: DefaultHandshakeRate, DefaultHandshakeBurst. The excess is answered 503.
	HandshakeRate  float64
	HandshakeBurst int

	// DrainWindow is what Drain spreads the `reconnect` after_ms and the closes over:
	// DefaultDrainWindow.
	DrainWindow time.Duration
	// DrainGrace is how long after DrainWindow the drain's hard deadline falls:
	// DefaultDrainGrace.
	DrainGrace time.Duration
	// RestartGap shapes a drain with no successor on the same ports (no ReusePort),
	// which is what stopping a gateway in order to start it again is: the `reconnect`
	// after_ms fall in [RestartGap, RestartGap+DrainWindow] and the connections are
	// closed within the gap's first half, so that this process exits at once and its
	// clients come back when the new one listens, instead of meeting this one's 503s
	// and then a closed port. DefaultRestartGap; negative turns it off (after_ms over
	// [0, DrainWindow] from the start, each connection closed at its after_ms, the
	// process alive until then), which only suits clients that have other gateways to
	// go to.
	RestartGap time.Duration

	// WSListener and HTTPListener, when set, are listening TCP sockets to serve instead
	// of binding WSAddr and HTTPAddr: sockets another process bound and keeps, such as
	// systemd's socket activation (LISTEN_FDS) passes. Start takes them over (Shutdown
	// closes them). Such a socket outlives the gateway: Drain stops accepting on it at
	// once, so that connections arriving during a restart wait in the kernel's queue for
	// the next process instead of being refused. Default nil.
	WSListener, HTTPListener *os.File

	// ReusePort binds both listeners with SO_REUSEPORT, so that a new crease process
	// can bind the same ports while this one runs: a restart on one host without
	// refusing anyone. With it, Drain closes the listeners at once, so that the kernel
	// hands every new connection to the successor (without one, they are refused).
	// Default false.
	ReusePort bool

	// PublicWSURL is the WebSocket URL the page is told (behind a load balancer):
	// empty tells it the page's host on the WebSocket port.
	PublicWSURL string

	// Page is served at / (the scoreboard page): nil answers a line of plain text.
	Page http.Handler
	// Pprof serves net/http/pprof under /debug/pprof/: default false.
	Pprof bool
	// PublishAPI, when set, serves the writes under /v1/matches/ on the HTTP listener
	// (the publish API of package publish, with the embedded bus): nil serves none.
	PublishAPI http.Handler

	// HTTPReadTimeout bounds the read of one request on the HTTP listener, body included
	// (the publish API's): DefaultHTTPReadTimeout. HTTPIdleTimeout closes a kept-alive
	// connection idle that long: DefaultHTTPIdleTimeout.
	HTTPReadTimeout, HTTPIdleTimeout time.Duration

	// TickInterval is how often every loop gets its tick (sweeps, pings, the loop-lag
	// probe): DefaultTickInterval.
	TickInterval time.Duration
	// ViewerInterval is how often the per-match viewer counts are handed to a bus that
	// aggregates them (SetViewers): DefaultViewerInterval.
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
		o.Logger = slog.Default()
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
	if o.ReusePort && !reuseport.Supported {
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
	if o.RestartGap == 0 {
		o.RestartGap = DefaultRestartGap
	}
	if o.TickInterval == 0 {
		o.TickInterval = DefaultTickInterval
	}
	if o.ViewerInterval <= 0 {
		o.ViewerInterval = DefaultViewerInterval
	}
	if o.HTTPReadTimeout <= 0 {
		o.HTTPReadTimeout = DefaultHTTPReadTimeout
	}
	if o.HTTPIdleTimeout <= 0 {
		o.HTTPIdleTimeout = DefaultHTTPIdleTimeout
	}
	return o, nil
}
