package shard

import (
	"errors"
	"fmt"
	"time"

	"crease/wire"
)

// Defaults of Options.
const (
	DefaultBudget           = 64 << 10
	DefaultStallLimit       = 5 * time.Second
	DefaultCutLimit         = 30 * time.Second
	DefaultMaxSubscriptions = 16
	DefaultShedLag          = 50 * time.Millisecond
	DefaultInboxBytes       = 8 << 20
	DefaultHeartbeat        = 20 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultOpRate is the client ops per second a connection may sustain; the burst
	// defaults to twice MaxSubscriptions, so that a client can swap all its
	// subscriptions at once (an unsubscribe and a subscribe each).
	DefaultOpRate      = 20
	DefaultFlushSlice  = 500 * time.Microsecond
	DefaultCloseLinger = 5 * time.Second
	// DefaultSendBuffer is SO_SNDBUF for accepted sockets (the kernel doubles it for
	// its bookkeeping): room for a burst of small frames, small enough that a stalled
	// peer shows up as blocked to the OutboundBudget quickly.
	DefaultSendBuffer = 64 << 10

	// MaxHeartbeat and MaxHandshakeTimeout keep the connection clock's quarter-second
	// stamps (16 bits) unambiguous: 3 heartbeats and a sweep fit in 4.5 hours.
	MaxHeartbeat        = time.Hour
	MaxHandshakeTimeout = time.Hour
	// maxOpDebt bounds how far the op bucket's theoretical arrival time runs ahead of
	// the clock (two bursts), so that its 32-bit microsecond stamp stays unambiguous.
	maxOpDebt = 30 * time.Minute

	minFreeQueues = 64
)

// Sentinel errors of Options.WithDefaults.
var (
	ErrBudget       = errors.New("shard: budget must be at least 4 KiB")
	ErrLimits       = errors.New("shard: stall limit must be > 0 and below the cut limit")
	ErrHeartbeat    = errors.New("shard: heartbeat must be a whole number of seconds from 1s to 1h")
	ErrHandshake    = errors.New("shard: handshake timeout must be > 0 and at most 1h")
	ErrMaxSubs      = errors.New("shard: max subscriptions must be at least 1")
	ErrInboxBytes   = errors.New("shard: inbox bytes must be at least 64 KiB")
	ErrSendBuffer   = errors.New("shard: send buffer must be > 0, or -1 for the kernel's autotuning")
	ErrLinger       = errors.New("shard: close linger must not be negative")
	ErrRecoveryWait = errors.New("shard: recovery wait must not be negative")
	ErrCatchUp      = errors.New("shard: catch-up bytes must be from 1 to the budget, catch-up work at least 1")
	ErrOpRate       = errors.New("shard: op rate must be from 0.01 to 1,000,000 per second, op burst at least 1, and two bursts at most 30 minutes of the rate")
)

// Options configures every shard of a gateway. Zero fields take the defaults named
// below; WithDefaults fills them and validates the result.
type Options struct {
	// Budget is the OutboundBudget: the bytes queued for one connection (the shard's
	// lanes and gnet's buffer together) over which its queued deltas are shed for one
	// `resync` per match. At least 4 KiB; default DefaultBudget (64 KiB).
	Budget int
	// SoftWatermark is the queued bytes over which a connection's events are dropped
	// (commentary goes before wickets). From 1 to Budget; default Budget/2.
	SoftWatermark int
	// StallLimit is how long a connection's socket may stay full before its deltas are
	// shed for a resync, whatever the bytes queued. Default DefaultStallLimit (5s).
	StallLimit time.Duration
	// CutLimit is how long a socket may stay full before the connection is closed with
	// 4008 (slow_consumer). Above StallLimit; default DefaultCutLimit (30s).
	CutLimit time.Duration
	// MaxSubscriptions is the most matches one connection may subscribe to; one more is
	// refused with too_many_subscriptions. At least 1; default
	// DefaultMaxSubscriptions (16).
	MaxSubscriptions int
	// ShedLag is the loop lag over which events are dropped at dispatch, before they
	// cost a queue slot per subscriber. Default DefaultShedLag (50ms).
	ShedLag time.Duration
	// InboxBytes bounds the frames queued for one loop by the bus; a delta refused for
	// lack of room makes its match `resync` (reason bus). At least 64 KiB; default
	// DefaultInboxBytes (8 MiB).
	InboxBytes int
	// Heartbeat is the ping interval, a whole number of seconds from 1s to 1h because
	// `hello` announces it as the integer heartbeat_s: 1500ms would be announced as 1
	// and the idle close would not match what clients were told. A connection from
	// which nothing arrives for 3 heartbeats is closed with 4000, never earlier.
	// Default DefaultHeartbeat (20s).
	Heartbeat time.Duration
	// HandshakeTimeout is how long a connection may take to complete its handshake
	// before it is closed, not earlier. Above 0 and at most 1h; default
	// DefaultHandshakeTimeout (5s).
	HandshakeTimeout time.Duration
	// OpRate is the client ops per second a connection may sustain, and OpBurst how
	// many it may send at once: a token bucket. An op over it is answered
	// `rate_limited`; refused ops still fill the bucket, so a connection that goes on
	// sending another OpBurst ops beyond its allowance (a flood, not a burst) is closed
	// with 1008. OpRate from 0.01 to 1,000,000, default DefaultOpRate (20); OpBurst at
	// least 1, default 2 x MaxSubscriptions (32), so that a client can swap all its
	// subscriptions at once; two bursts must take at most 30 minutes of the rate.
	OpRate  float64
	OpBurst int
	// FlushSlice bounds one stretch of socket writes on the loop. A fan-out to thousands
	// of sockets is cut into slices, each continued by a task queued behind whatever
	// else waits (reads, probes, ticks), so the loop's lag stays near one slice.
	// Default DefaultFlushSlice (500µs).
	FlushSlice time.Duration
	// SendBuffer is the kernel send buffer (SO_SNDBUF) the server sets on each accepted
	// socket; -1 leaves the kernel's autotuning. The Budget bounds only what the
	// gateway holds: with autotuning (tcp_wmem up to 4 MiB here) a socket whose peer
	// stopped reading takes ~2.8 MB of kernel memory before the gateway sees it blocked
	// at all, so 15,000 stalled clients could pin 40 GB. Default DefaultSendBuffer
	// (64 KiB).
	SendBuffer int
	// CloseLinger is how long a connection cut as a slow consumer keeps its socket so
	// that the client, if it reads again, gets what the socket holds and the 4008 close
	// frame. It is closed gracefully once the peer has acknowledged everything, or reset
	// when CloseLinger passes: a graceful close of a full socket would leave an orphan
	// probing a zero window for minutes, holding its buffer, while a client that resumes
	// reading could wait tens of seconds for the kernel's next probe. Not negative;
	// default DefaultCloseLinger (5s).
	CloseLinger time.Duration
	// CatchUpBytes is the largest patch of a catch-up delta made for one connection that
	// opted in (catchup.go); a composition over it is shed for `resync`. From 1 to
	// Budget; default DefaultCatchUpBytes (16 KiB).
	CatchUpBytes int
	// CatchUpWork bounds the patch bytes a shard composes per tick over all its
	// connections; past it, the tick's other compositions are shed for `resync`. At
	// least 1; default DefaultCatchUpWork (256 KiB).
	CatchUpWork int
	// RecoveryWait is how long a subscribe with `since` may wait for the gateway's
	// history answer before it is answered `recovered:false` (recover.go). Above 0;
	// default DefaultRecoveryWait (5s).
	RecoveryWait time.Duration
	// Now is the shard's clock: every time a shard reads goes through it (clock.go),
	// the connection timers (heartbeats, the idle close, the handshake deadline, the op
	// bucket, token expiry) and the loop's own timing (lag, flush slices, stalls, cuts,
	// lingers, drains) alike, so that a test moves time instead of waiting. Any
	// goroutine may call it. Default time.Now.
	Now func() time.Time
}

// WithDefaults fills zero fields and validates.
func (o Options) WithDefaults() (Options, error) {
	if o.Budget == 0 {
		o.Budget = DefaultBudget
	}
	if o.SoftWatermark == 0 {
		o.SoftWatermark = o.Budget / 2
	}
	if o.StallLimit == 0 {
		o.StallLimit = DefaultStallLimit
	}
	if o.CutLimit == 0 {
		o.CutLimit = DefaultCutLimit
	}
	if o.MaxSubscriptions == 0 {
		o.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if o.ShedLag == 0 {
		o.ShedLag = DefaultShedLag
	}
	if o.InboxBytes == 0 {
		o.InboxBytes = DefaultInboxBytes
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.HandshakeTimeout == 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.OpRate == 0 {
		o.OpRate = DefaultOpRate
	}
	if o.OpBurst == 0 && o.MaxSubscriptions > 0 {
		o.OpBurst = 2 * o.MaxSubscriptions
	}
	if o.SendBuffer == 0 {
		o.SendBuffer = DefaultSendBuffer
	}
	if o.FlushSlice == 0 {
		o.FlushSlice = DefaultFlushSlice
	}
	if o.CloseLinger == 0 {
		o.CloseLinger = DefaultCloseLinger
	}
	if o.CatchUpBytes == 0 {
		o.CatchUpBytes = min(DefaultCatchUpBytes, o.Budget)
	}
	if o.CatchUpWork == 0 {
		o.CatchUpWork = DefaultCatchUpWork
	}
	if o.RecoveryWait == 0 {
		o.RecoveryWait = DefaultRecoveryWait
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case o.Budget < 4<<10 || o.SoftWatermark <= 0 || o.SoftWatermark > o.Budget:
		return o, ErrBudget
	case o.StallLimit <= 0 || o.CutLimit <= o.StallLimit:
		return o, ErrLimits
	case o.Heartbeat < time.Second || o.Heartbeat > MaxHeartbeat || o.Heartbeat%time.Second != 0:
		return o, fmt.Errorf("%w (got %v)", ErrHeartbeat, o.Heartbeat)
	case o.HandshakeTimeout <= 0 || o.HandshakeTimeout > MaxHandshakeTimeout:
		return o, fmt.Errorf("%w (got %v)", ErrHandshake, o.HandshakeTimeout)
	case o.MaxSubscriptions < 1:
		return o, ErrMaxSubs
	case !(o.OpRate >= 0.01 && o.OpRate <= 1e6) || o.OpBurst < 1 ||
		2*float64(o.OpBurst)/o.OpRate > maxOpDebt.Seconds():
		return o, fmt.Errorf("%w (got rate %v, burst %d)", ErrOpRate, o.OpRate, o.OpBurst)
	case o.InboxBytes < 64<<10:
		return o, ErrInboxBytes
	case o.SendBuffer < -1:
		return o, ErrSendBuffer
	case o.CloseLinger < 0:
		return o, ErrLinger
	case o.RecoveryWait < 0:
		return o, ErrRecoveryWait
	case o.CatchUpBytes < 1 || o.CatchUpBytes > o.Budget || o.CatchUpWork < 1:
		return o, ErrCatchUp
	}
	return o, nil
}

// Hooks are the shard's calls back into the gateway. They run on the loop and must not
// block.
type Hooks struct {
	// Interest is called when this shard gets its first subscriber of match (on) or
	// loses its last (off).
	Interest func(shard int, match string, on bool)
	// Closed is called once per upgraded connection when it ends, and for a handshake
	// closed at its deadline (wire.ReasonHandshakeTimeout) or refused with an HTTP status
	// (wire.ReasonHandshakeRefused); not for a peer gone before its upgrade.
	Closed func(c *Conn, reason wire.CloseReason)
	// TokenExpired is called by the sweep for an open connection whose token has
	// expired; it sends the `error` token_expired. The shard then closes c with 4001
	// (wire.ReasonTokenExpired) unless the hook closed it already.
	TokenExpired func(c *Conn)
	// History reads the deltas a subscribe with `since` missed (recover.go); nil: every
	// such subscribe is answered `recovered:false`.
	History History
}
