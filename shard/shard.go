package shard

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Shard is the state of one event loop.
type Shard struct {
	idx   int
	loop  gnet.EventLoop
	opts  Options
	hooks Hooks
	m     *LoopMetrics

	inbox     inbox
	scheduled atomic.Bool
	lag       atomic.Int64        // ns, the latest of probe lag and dispatch delay
	unread    func(gnet.Conn) int // bytes the peer sent that the loop has not read yet (SIOCINQ); tests replace it
	pending   atomic.Int64        // bytes queued in our lanes, for the pending-bytes gauge
	conns     atomic.Int64

	index   map[string]*Subscribers
	all     []*Conn
	dirty   []*Conn
	blocked []*Conn
	free    []*outQueue
	wbuf    []byte
	batch   []*Frame
	counts  [4]int64 // delivered by prio, flushed to metrics per drain
	drain   *drainState
	linger  []lingering // slow consumers cut, waiting for their close frame to be read
	ticks   int64
	drainFn gnet.RunnableFunc

	epoch     time.Time     // Options.Now at creation: the shard clock's zero (clock.go)
	nextSweep time.Duration // connection clock of the next sweepConns
	ops       opBucket
	rec       recoveryState // subscriptions with `since` waiting for their replay (recover.go)
	cu        catchUpState  // catch-up deltas (catchup.go)

	freeLow      int  // fewest queues on s.free during the current second
	dirtyNext    int  // s.dirty[:dirtyNext] are flushed
	flushPending bool // a continuation of flushDirty is queued on the loop
	flushFn      gnet.RunnableFunc
}

// New returns the shard for one event loop. idx is its position among the gateway's
// shards (0-based), used for metric labels and interest masks.
func New(idx int, loop gnet.EventLoop, opts Options, hooks Hooks, m *LoopMetrics) *Shard {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Shard{
		idx:   idx,
		loop:  loop,
		opts:  opts,
		hooks: hooks,
		m:     m,
		index: make(map[string]*Subscribers),

		epoch:  opts.Now(),
		ops:    newOpBucket(opts.OpRate, opts.OpBurst),
		unread: unread,
	}
	s.inbox.limit = int64(opts.InboxBytes)
	s.drainFn = func(context.Context) error { s.drainInbox(); return nil }
	s.flushFn = func(context.Context) error { s.flushPending = false; s.flushDirty(); return nil }
	return s
}

// Index returns the shard's position among the gateway's shards.
func (s *Shard) Index() int { return s.idx }

// Loop returns the shard's event loop.
func (s *Shard) Loop() gnet.EventLoop { return s.loop }

// Conns returns the number of open connections (any goroutine).
func (s *Shard) Conns() int64 { return s.conns.Load() }

// Lag returns the latest measured loop delay (any goroutine).
func (s *Shard) Lag() time.Duration { return time.Duration(s.lag.Load()) }

// PendingBytes returns the bytes queued in this shard's lanes (any goroutine).
func (s *Shard) PendingBytes() int64 { return s.pending.Load() }

func (s *Shard) noteLag(d int64) { s.lag.Store(d) }

// Probe records the delay of a probe task posted at postedAt (shard clock, ns).
func (s *Shard) Probe(postedAt int64) {
	d := s.now() - postedAt
	if d < 0 {
		d = 0
	}
	s.m.LoopLag.Observe(float64(d) / 1e9)
	s.noteLag(d)
}

// Clock returns the shard clock in ns, for Probe.
func (s *Shard) Clock() int64 { return s.now() }

// String identifies the shard in logs.
func (s *Shard) String() string { return fmt.Sprintf("loop-%d", s.idx) }
