package redis

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"crease/bus"
)

// Defaults filled in by New for zero-valued Options fields.
const (
	DefaultPrefix              = "crease"
	DefaultUnsubscribeDebounce = 2 * time.Second
	DefaultHandoffMessages     = 16384
	DefaultHandoffBytes        = 16 << 20
	DefaultViewerTTL           = 30 * time.Second
	DefaultHealthInterval      = time.Second
	DefaultSentinelRefresh     = 5 * time.Second
	DefaultReassert            = 5 * time.Second
)

// Errors returned by New for invalid Options.
var (
	ErrNoAddrs        = errors.New("redis bus: Options.Addrs is empty")
	ErrBadPrefix      = errors.New("redis bus: Options.Prefix must be non-empty, without braces, colons at the ends or spaces")
	ErrBadDuration    = errors.New("redis bus: durations in Options must not be negative")
	ErrBadHandoff     = errors.New("redis bus: Options.HandoffMessages and HandoffBytes must not be negative")
	ErrBadNodeID      = errors.New("redis bus: Options.NodeID must not contain spaces or colons")
	ErrBadSentinel    = errors.New("redis bus: Options.Sentinel must be a master name without spaces, and not with Cluster")
	ErrNotConnected   = errors.New("redis bus: not connected to Redis")
	ErrAlreadyStarted = errors.New("redis bus: Start called twice")
	ErrBadFrame       = errors.New("redis bus: frame does not match the message it is published as")
	// ErrStoreBehind: Redis holds an older snapshot (or none) than a delta this gateway
	// has already delivered; the publisher has not re-seeded it yet. Retry later.
	ErrStoreBehind = errors.New("redis bus: the stored snapshot is behind what was delivered")
)

// Options configures a Bus. The zero value of each field means its default.
type Options struct {
	// Addrs are the Redis addresses, host:port. Standalone mode uses the first one; in
	// cluster mode they are the seed nodes; with Sentinel they are the sentinels (any
	// one that answers is enough; the others are learnt from it).
	Addrs []string
	// Cluster selects Redis Cluster: sharded pub/sub (SSUBSCRIBE/SPUBLISH).
	Cluster bool
	// Sentinel, when set, is the name of the master that Redis Sentinel monitors
	// (`sentinel monitor NAME ...`): the bus asks the sentinels at Addrs for its address
	// and follows it across failovers (their +switch-master event), subscriptions and
	// publishes included. Empty (the default) means no Sentinel. Not with Cluster.
	Sentinel string
	// SentinelRefresh is how often the master's address is asked of the sentinels again
	// besides their events, so that one missed +switch-master cannot leave the bus on a
	// demoted master: DefaultSentinelRefresh. Only with Sentinel.
	SentinelRefresh time.Duration
	// Prefix of every key and channel (PROTOCOL.md): DefaultPrefix.
	Prefix string
	// Registerer receives the bus's metrics (doc.go lists them); nil means a private
	// registry, which nobody gathers (as server.Options.Registerer, whose gateway serves
	// its own at /metrics).
	Registerer prometheus.Registerer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// UnsubscribeDebounce delays the Redis unsubscribe after the last local subscriber
	// of a match leaves; a Subscribe within it cancels the unsubscribe:
	// DefaultUnsubscribeDebounce.
	UnsubscribeDebounce time.Duration
	// HandoffMessages and HandoffBytes bound the queue between the Redis connection and
	// the goroutine that calls the Sink: DefaultHandoffMessages, DefaultHandoffBytes.
	// Beyond either, messages are dropped and their matches reported Lost(bus).
	HandoffMessages int
	HandoffBytes    int
	// NodeID names this gateway in the per-node viewer counts: hostname-pid-random by
	// default. Two gateways with one NodeID overwrite each other's counts.
	NodeID string
	// ViewerTTL is how long a node's viewer counts count after its last SetViewers:
	// DefaultViewerTTL.
	ViewerTTL time.Duration
	// HealthInterval is how often the link is PINGed for Ready: DefaultHealthInterval.
	HealthInterval time.Duration
	// History bounds crease:{ID}:hist, the recent deltas a publisher keeps per match
	// (by count, age and bytes): bus.DefaultHistoryDeltas, bus.DefaultHistoryAge,
	// bus.DefaultHistoryBytes. Only publishers use it.
	History bus.HistoryOptions
	// Reassert is how long a publisher's match stays idle before the bus runs its last
	// delta again, and then how often (for up to an hour after it): a store that still
	// holds it answers `duplicate` and nothing is written; a store that lost it (a
	// failover to a replica that lacked the last write, FLUSHALL) gets it back, so that
	// gateways stop answering 503 for the snapshot without waiting for a next delta that,
	// after the last ball, never comes. DefaultReassert; negative disables it. A store
	// that also lost the match's journal before the delta is left to the next publish.
	// Only publishers use it.
	Reassert time.Duration
}

// withDefaults fills zero fields and validates the result.
func (o Options) withDefaults() (Options, error) {
	if len(o.Addrs) == 0 {
		return o, ErrNoAddrs
	}
	for _, a := range o.Addrs {
		if strings.TrimSpace(a) == "" {
			return o, ErrNoAddrs
		}
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(o.Prefix, "{} \t\r\n") || strings.HasPrefix(o.Prefix, ":") || strings.HasSuffix(o.Prefix, ":") {
		return o, fmt.Errorf("%w: %q", ErrBadPrefix, o.Prefix)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Sentinel != "" && (o.Cluster || strings.ContainsAny(o.Sentinel, " \t\r\n")) {
		return o, fmt.Errorf("%w: %q", ErrBadSentinel, o.Sentinel)
	}
	if o.UnsubscribeDebounce < 0 || o.ViewerTTL < 0 || o.HealthInterval < 0 || o.SentinelRefresh < 0 {
		return o, ErrBadDuration
	}
	if o.UnsubscribeDebounce == 0 {
		o.UnsubscribeDebounce = DefaultUnsubscribeDebounce
	}
	if o.ViewerTTL == 0 {
		o.ViewerTTL = DefaultViewerTTL
	}
	if o.HealthInterval == 0 {
		o.HealthInterval = DefaultHealthInterval
	}
	if o.SentinelRefresh == 0 {
		o.SentinelRefresh = DefaultSentinelRefresh
	}
	if o.Reassert == 0 {
		o.Reassert = DefaultReassert
	}
	o.History = o.History.WithDefaults()
	if o.HandoffMessages < 0 || o.HandoffBytes < 0 {
		return o, ErrBadHandoff
	}
	if o.HandoffMessages == 0 {
		o.HandoffMessages = DefaultHandoffMessages
	}
	if o.HandoffBytes == 0 {
		o.HandoffBytes = DefaultHandoffBytes
	}
	if o.NodeID == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "node"
		}
		// The random part keeps two buses of one process (tests) apart.
		o.NodeID = fmt.Sprintf("%s-%d-%04x", host, os.Getpid(), rand.Uint32N(1<<16))
	}
	if strings.ContainsAny(o.NodeID, ": \t\r\n") {
		return o, fmt.Errorf("%w: %q", ErrBadNodeID, o.NodeID)
	}
	return o, nil
}
