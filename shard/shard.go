package shard

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"crease/bus"
	"crease/codec"
)

// Hooks are the shard's calls back into the gateway. They run on the loop and must not
// block.
type Hooks struct {
	// Interest is called when this shard gets its first subscriber of match (on) or
	// loses its last (off).
	Interest func(shard int, match string, on bool)
	// Closed is called once per upgraded connection when it ends, and for a handshake
	// closed at its deadline (ReasonHandshakeTimeout); not for a handshake refused with
	// an HTTP status, which the gateway counts as it refuses.
	Closed func(c *Conn, reason CloseReason)
	// TokenExpired is called by the sweep for an open connection whose token has
	// expired; it sends the `error` token_expired. The shard then closes c with 4001
	// (ReasonTokenExpired) unless the hook closed it already.
	TokenExpired func(c *Conn)
}

// SubResult is the outcome of Subscribe.
type SubResult uint8

// Subscribe outcomes.
const (
	SubAdded SubResult = iota
	SubAlready
	SubTooMany
)

// Shard is the state of one event loop.
type Shard struct {
	idx   int
	loop  gnet.EventLoop
	opts  Options
	hooks Hooks
	m     *LoopMetrics
	epoch time.Time

	inbox     inbox
	scheduled atomic.Bool
	lag       atomic.Int64 // ns, the latest of probe lag and dispatch delay
	pending   atomic.Int64 // bytes queued in our lanes, for the pending-bytes gauge
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

	connEpoch time.Time     // Options.Now at creation: the connection clock's zero (clock.go)
	nextSweep time.Duration // connection clock of the next sweepConns
	ops       opBucket

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
		epoch: time.Now(),
		index: make(map[string]*Subscribers),

		connEpoch: opts.Now(),
		ops:       newOpBucket(opts.OpRate, opts.OpBurst),
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

func (s *Shard) now() int64 { return int64(time.Since(s.epoch)) }

// ---- bus side: any goroutine ----

// Post hands a bus frame to the loop. It never blocks; when the inbox is full the frame
// is refused and counted, and if it is a delta its match gets `resync` (reason bus)
// before anything later.
func (s *Shard) Post(f *Frame) {
	if !s.inbox.push(&inboxItem{frame: f, at: s.now()}) {
		s.m.dropped(f.Prio, "inbox_full")
	}
	s.wake()
}

// PostLost tells the loop that frames of match were lost before this point.
func (s *Shard) PostLost(match string, reason bus.ResyncReason) {
	s.inbox.push(&inboxItem{lost: match, reason: reason, at: s.now()})
	s.wake()
}

func (s *Shard) wake() {
	if s.scheduled.CompareAndSwap(false, true) {
		if err := s.loop.Execute(context.Background(), s.drainFn); err != nil {
			// The engine is shutting down; nothing will drain again.
			s.scheduled.Store(false)
		}
	}
}

// ---- loop side ----

// Open registers a new connection (OnOpen).
func (s *Shard) Open(gc gnet.Conn) *Conn {
	c := &Conn{gc: gc, pos: int32(len(s.all)), seen: s.quarters(), state: StateHandshake, tat: s.micros()}
	s.all = append(s.all, c)
	return c
}

// Upgraded marks c open after its 101 answer.
func (s *Shard) Upgraded(c *Conn) {
	c.state = StateOpen
	s.conns.Add(1)
	s.m.Connections.Inc()
}

// Touch records that bytes arrived from c.
func (s *Shard) Touch(c *Conn) { c.seen = s.quarters() }

// Refuse closes a connection whose handshake was refused with an HTTP status (already
// written).
func (s *Shard) Refuse(c *Conn) {
	if c.state != StateHandshake {
		return
	}
	c.reason = ReasonHandshakeRefused
	c.state = StateClosing
	_ = c.gc.Close()
}

// Subscribe adds c to match's subscribers.
func (s *Shard) Subscribe(c *Conn, match string) SubResult {
	if c.Subscribed(match) {
		return SubAlready
	}
	if c.Subscriptions() >= s.opts.MaxSubscriptions {
		return SubTooMany
	}
	subs := s.index[match]
	if subs == nil {
		subs = &Subscribers{match: match}
		s.index[match] = subs
		// Interest is declared before `subscribed` is queued, so every frame dispatched
		// after the client sees `subscribed` reaches this shard.
		if s.hooks.Interest != nil {
			s.hooks.Interest(s.idx, match, true)
		}
	}
	c.addSub(subRef{s: subs, pos: int32(len(subs.conns))})
	subs.conns = append(subs.conns, c)
	s.m.Subscriptions.Inc()
	return SubAdded
}

// Subscribed returns the `subscribed` answer for match. While the shard has subscribers
// of match it is built once and shared by all of them, like every other frame.
func (s *Shard) Subscribed(match string) *Frame {
	subs := s.index[match]
	if subs == nil {
		return ControlText(SubscribedJSON(match))
	}
	if subs.subscribed == nil {
		subs.subscribed = ControlText(SubscribedJSON(match))
	}
	return subs.subscribed
}

// Unsubscribe removes c from match's subscribers; false if it was not subscribed.
func (s *Shard) Unsubscribe(c *Conn, match string) bool {
	i := c.findSub(match)
	if i < 0 {
		return false
	}
	s.detach(c, c.sub(i))
	c.removeSub(i)
	s.dropQueued(c, match)
	return true
}

// leaveAll removes c from every match it is subscribed to, for a connection that ends.
func (s *Shard) leaveAll(c *Conn) {
	c.eachSub(func(r subRef) { s.detach(c, r) })
	c.sub0, c.ext = nil, nil
}

// detach removes c from one Subscribers list in O(1).
func (s *Shard) detach(c *Conn, r subRef) {
	subs := r.s
	last := len(subs.conns) - 1
	moved := subs.conns[last]
	subs.conns[r.pos] = moved
	subs.conns[last] = nil
	subs.conns = subs.conns[:last]
	if moved != c {
		moved.setSubPos(subs, r.pos)
	}
	s.m.Subscriptions.Dec()
	if len(subs.conns) == 0 {
		delete(s.index, subs.match)
		if s.hooks.Interest != nil {
			s.hooks.Interest(s.idx, subs.match, false)
		}
	}
}

// dropQueued removes queued frames of match after an unsubscribe.
func (s *Shard) dropQueued(c *Conn, match string) {
	q := c.out
	if q == nil {
		return
	}
	q.state = s.filterMatch(q, q.state, match)
	q.low = s.filterMatch(q, q.low, match)
}

func (s *Shard) filterMatch(q *outQueue, lane []*Frame, match string) []*Frame {
	keep := lane[:0]
	for _, f := range lane {
		if f.Match == match && f.Kind != KindControl {
			q.bytes -= len(f.Bytes)
			s.pending.Add(-int64(len(f.Bytes)))
			continue
		}
		keep = append(keep, f)
	}
	clear(lane[len(keep):])
	return keep
}

// Send queues a control frame for c and writes it now if the socket allows.
func (s *Shard) Send(c *Conn, f *Frame) {
	if c.state != StateOpen {
		return
	}
	// An idle connection whose socket took everything so far gets the frame written at
	// once, without taking a queue: idle connections never hold one.
	if c.out == nil && c.gc.OutboundBuffered() == 0 {
		s.writeNow(c, f)
		return
	}
	s.enqueue(c, f)
	s.flush(c, s.now())
}

// writeNow writes one frame to an idle connection. A failed write closes c inside Write.
func (s *Shard) writeNow(c *Conn, f *Frame) {
	s.counts[countIndex(f)]++
	_, _ = c.gc.Write(f.Bytes)
}

// Close ends c for reason: queued state frames are written (unless c is being cut as a
// slow consumer), then the close frame, then gnet closes the socket; a slow consumer's
// socket lingers first (Options.CloseLinger, sweepLinger). gnet writes what it holds
// before closing, so no frame is cut in half by us.
func (s *Shard) Close(c *Conn, reason CloseReason) {
	if c.state >= StateClosing {
		return
	}
	wasOpen := c.state == StateOpen
	c.reason = reason
	if wasOpen {
		if q := c.out; q != nil {
			s.dropLow(q, "")
			if reason == ReasonSlow {
				// Nothing more is written to a socket that cannot take it; the queued
				// frames are forgotten with the connection.
				s.pending.Add(-int64(q.bytes))
				clear(q.state)
				q.state = q.state[:0]
				q.bytes = 0
			}
			s.writeQueued(c, q, true)
		}
		if code := reason.Code(); code != 0 && c.state == StateOpen {
			_, _ = c.gc.Write(codec.CloseFrame(code, reason.String()))
		}
	}
	if c.state == StateClosed {
		return
	}
	c.state = StateClosing
	if reason == ReasonSlow && wasOpen {
		// The socket is full: keep it for CloseLinger so that the close frame can still
		// reach a client that reads again (see Options.CloseLinger). It leaves its
		// matches now, so that no fan-out reaches it meanwhile.
		s.leaveAll(c)
		s.linger = append(s.linger, lingering{c: c, until: s.now() + int64(s.opts.CloseLinger)})
		return
	}
	_ = c.gc.Close()
}

// lingering is a connection cut as a slow consumer whose socket is kept until its peer
// has read everything, or until the deadline.
type lingering struct {
	c     *Conn
	until int64 // shard clock ns
}

// sweepLinger closes the lingering connections whose peer has acknowledged every byte
// (gracefully: nothing is left for an orphan to send) and resets those past their
// deadline, which frees their kernel buffers at once and tells the client now; the
// frames it already received stay readable on its side. force resets every one.
func (s *Shard) sweepLinger(now int64, force bool) {
	keep := s.linger[:0]
	for _, l := range s.linger {
		c := l.c
		if c.state != StateClosing {
			continue // gnet closed it meanwhile (the peer went away, or a write failed)
		}
		switch {
		case !force && c.gc.OutboundBuffered() == 0 && unacked(c.gc) == 0:
			_ = c.gc.Close()
		case force || now >= l.until:
			_ = c.gc.SetLinger(0)
			_ = c.gc.Close()
		default:
			keep = append(keep, l)
		}
	}
	clear(s.linger[len(keep):])
	s.linger = keep
}

// Closed is OnClose: it forgets c entirely. c must not be used afterwards.
func (s *Shard) Closed(c *Conn) {
	if c.state == StateClosed {
		return
	}
	wasUpgraded := c.state == StateOpen || (c.state == StateClosing && c.reason != ReasonHandshakeTimeout && c.reason != ReasonHandshakeRefused)
	if c.state == StateOpen {
		c.reason = ReasonPeer
	}
	c.state = StateClosed
	s.leaveAll(c)
	if q := c.out; q != nil {
		s.pending.Add(-int64(q.bytes))
		c.out = nil
		// A queue still listed as dirty or blocked is reclaimed when those lists are
		// walked; otherwise it can be reused now.
		if !q.dirty && !q.listed {
			s.release(q)
		} else {
			q.state = q.state[:0]
			q.low = q.low[:0]
			q.bytes = 0
		}
	}
	last := int32(len(s.all) - 1)
	moved := s.all[last]
	s.all[c.pos] = moved
	moved.pos = c.pos
	s.all[last] = nil
	s.all = s.all[:last]
	if wasUpgraded {
		s.conns.Add(-1)
		s.m.Connections.Dec()
	}
	if (wasUpgraded || c.reason == ReasonHandshakeTimeout) && s.hooks.Closed != nil {
		s.hooks.Closed(c, c.reason)
	}
	c.gc = nil
}

// ---- queues ----

func (s *Shard) queue(c *Conn) *outQueue {
	if c.out == nil {
		if n := len(s.free); n > 0 {
			c.out = s.free[n-1]
			s.free[n-1] = nil
			s.free = s.free[:n-1]
			s.freeLow = min(s.freeLow, n-1)
		} else {
			c.out = &outQueue{}
		}
	}
	return c.out
}

// release gives q back for reuse. A delivery to a hot match takes a queue for every
// subscriber of the shard at once and gives them back after the write, so the free list
// may hold one queue per connection; beyond the first 4096 only queues with small lanes
// are kept, so that idle connections do not pin big arrays.
func (s *Shard) release(q *outQueue) {
	q.reset()
	n := len(s.free)
	switch {
	case n < 4096 && cap(q.state) <= 256 && cap(q.low) <= 256,
		n < len(s.all) && cap(q.state) <= 8 && cap(q.low) <= 8:
		s.free = append(s.free, q)
	}
}

// enqueue puts f on c's lanes and marks c dirty; flushDirty writes it.
func (s *Shard) enqueue(c *Conn, f *Frame) {
	q := s.queue(c)
	if f.Kind == KindEvent {
		if q.bytes+c.gc.OutboundBuffered() > s.opts.SoftWatermark {
			s.m.dropped(f.Prio, "budget")
			return
		}
		q.low = append(q.low, f)
	} else {
		q.state = append(q.state, f)
	}
	q.bytes += len(f.Bytes)
	s.pending.Add(int64(len(f.Bytes)))
	if !q.dirty {
		q.dirty = true
		s.dirty = append(s.dirty, c)
	}
}

// flush writes what c has queued, if the socket has taken everything gnet held;
// otherwise, or if the socket fills up while writing, it applies the OutboundBudget
// policy and leaves c on the blocked list.
func (s *Shard) flush(c *Conn, now int64) {
	q := c.out
	if q == nil || c.state != StateOpen {
		return
	}
	ob := c.gc.OutboundBuffered()
	if ob == 0 {
		q.blockedSince = 0
		if !s.writeQueued(c, q, false) {
			return
		}
		ob = c.gc.OutboundBuffered()
	}
	if q.blockedSince == 0 {
		q.blockedSince = now
	}
	if !s.police(c, q, ob, now) {
		return
	}
	if len(q.state)+len(q.low) > 0 && !q.listed {
		q.listed = true
		s.blocked = append(s.blocked, c)
	}
}

// writeQueued writes both lanes (state lane first) and removes what it wrote. Unless
// closing, it writes at most Budget bytes at a time and goes on only while the socket
// takes everything: a burst larger than the budget never lands in gnet's unbounded
// buffer, it stays in our lanes where the budget applies. It reports whether frames are
// left queued (the socket filled up); false also when c was closed inside Write or q
// was given back.
func (s *Shard) writeQueued(c *Conn, q *outQueue, closing bool) bool {
	limit := s.opts.Budget
	if closing {
		limit = int(^uint(0) >> 1)
	}
	for len(q.state)+len(q.low) > 0 {
		buf := s.wbuf[:0]
		ns := takeFrames(q.state, &buf, limit, s.counts[:])
		nl := 0
		if ns == len(q.state) {
			nl = takeFrames(q.low, &buf, limit, s.counts[:])
		}
		q.state = shiftLane(q.state, ns)
		q.low = shiftLane(q.low, nl)
		q.bytes -= len(buf)
		s.pending.Add(-int64(len(buf)))
		empty := len(q.state)+len(q.low) == 0
		if empty && !q.dirty && !q.listed && !closing {
			c.out = nil
			s.release(q)
		}
		// gnet copies what the socket does not take, so the scratch buffer is reused.
		// A failed write closes c inside Write (OnClose runs), which the callers
		// tolerate.
		_, _ = c.gc.Write(buf)
		if cap(buf) > 1<<20 {
			buf = nil
		}
		s.wbuf = buf[:0]
		if empty || c.state == StateClosed || c.out != q {
			return false
		}
		if c.gc.OutboundBuffered() > 0 {
			return true
		}
	}
	return false
}

// takeFrames appends the leading frames of lane to buf while buf stays within limit
// (always at least one frame when buf is empty), counts them as delivered and returns
// how many it took.
func takeFrames(lane []*Frame, buf *[]byte, limit int, counts []int64) int {
	n := 0
	for _, f := range lane {
		if len(*buf) > 0 && len(*buf)+len(f.Bytes) > limit {
			break
		}
		*buf = append(*buf, f.Bytes...)
		counts[countIndex(f)]++
		n++
	}
	return n
}

// shiftLane removes the first n frames of lane, keeping its array.
func shiftLane(lane []*Frame, n int) []*Frame {
	if n == 0 {
		return lane
	}
	k := copy(lane, lane[n:])
	clear(lane[k:])
	return lane[:k]
}

// countIndex is the delivered-counter slot of f: its priority, or 0 for frames the
// gateway made for one connection.
func countIndex(f *Frame) int {
	if f.Kind >= KindControl {
		return 0
	}
	return int(f.Prio & 3)
}

// police applies the OutboundBudget to a connection whose socket is full. It returns
// false if the connection was cut.
func (s *Shard) police(c *Conn, q *outQueue, ob int, now int64) bool {
	total := q.bytes + ob
	if total > s.opts.SoftWatermark && len(q.low) > 0 {
		s.dropLow(q, "budget")
		total = q.bytes + ob
	}
	blocked := time.Duration(now - q.blockedSince)
	if blocked >= s.opts.CutLimit {
		s.m.Cuts.Inc()
		s.Close(c, ReasonSlow)
		return false
	}
	if total > s.opts.Budget || blocked >= s.opts.StallLimit {
		s.shedDeltas(c, q, bus.ReasonSlow)
	}
	return true
}

// dropLow drops every queued event, counted under reason unless it is "".
func (s *Shard) dropLow(q *outQueue, reason string) {
	for _, f := range q.low {
		q.bytes -= len(f.Bytes)
		s.pending.Add(-int64(len(f.Bytes)))
		if reason != "" {
			s.m.dropped(f.Prio, reason)
		}
	}
	clear(q.low)
	q.low = q.low[:0]
}

// shedDeltas replaces every queued delta of c by one resync marker per match.
func (s *Shard) shedDeltas(c *Conn, q *outQueue, reason bus.ResyncReason) {
	var shed []string
	keep := q.state[:0]
	for _, f := range q.state {
		if f.Kind != KindDelta {
			keep = append(keep, f)
			continue
		}
		q.bytes -= len(f.Bytes)
		s.pending.Add(-int64(len(f.Bytes)))
		s.m.dropped(f.Prio, string(reason))
		if !contains(shed, f.Match) {
			shed = append(shed, f.Match)
		}
	}
	clear(q.state[len(keep):])
	q.state = keep
	if cap(keep) > 64 && len(keep) < cap(keep)/8 {
		// A drain enqueues its whole batch before writing: a blocked connection's lane
		// must not keep that high-water array (8 B per frame of every batch) while it
		// holds a resync and a ping.
		q.state = append(make([]*Frame, 0, len(keep)+len(shed)+4), keep...)
	}
	for _, match := range shed {
		if hasResync(q.state, match) {
			continue
		}
		f := resyncFrame(match, reason)
		q.state = append(q.state, f)
		q.bytes += len(f.Bytes)
		s.pending.Add(int64(len(f.Bytes)))
		s.m.resync(reason)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// upgradeResync turns the queued resync of match into one with reason epoch; false when
// it says epoch already.
func (s *Shard) upgradeResync(q *outQueue, match string) bool {
	for i, f := range q.state {
		if f.Kind == KindResync && f.Match == match {
			if f.Reason == bus.ReasonEpoch {
				return false
			}
			nf := resyncFrame(match, bus.ReasonEpoch)
			d := len(nf.Bytes) - len(f.Bytes)
			q.bytes += d
			s.pending.Add(int64(d))
			q.state[i] = nf
			return true
		}
	}
	return false
}

func hasResync(lane []*Frame, match string) bool {
	for _, f := range lane {
		if f.Kind == KindResync && f.Match == match {
			return true
		}
	}
	return false
}

// flushDirty writes every connection touched since the last flush: everything queued
// for a connection goes out in one write, so batches grow by themselves under load.
//
// It writes for at most FlushSlice, then queues its own continuation on the loop, so
// that a pass over thousands of sockets never holds the loop for longer than a slice.
// Frames of one connection stay in order: a connection flushed later simply has more
// queued by then.
func (s *Shard) flushDirty() {
	if len(s.dirty) == 0 {
		s.observeFanout()
		return
	}
	now := s.now()
	start := time.Now()
	i := s.dirtyNext
	for ; i < len(s.dirty); i++ {
		if i > s.dirtyNext && (i-s.dirtyNext)&31 == 0 && time.Since(start) > s.opts.FlushSlice {
			break
		}
		c := s.dirty[i]
		s.dirty[i] = nil
		q := c.out
		if q == nil {
			continue
		}
		q.dirty = false
		if c.state != StateOpen {
			if c.state == StateClosed && !q.listed {
				s.release(q)
			}
			continue
		}
		s.flush(c, now)
		if c.out == q && len(q.state)+len(q.low) == 0 && !q.listed && c.state == StateOpen {
			c.out = nil
			s.release(q)
		}
	}
	s.flushCounts()
	if i < len(s.dirty) {
		s.dirtyNext = i
		if !s.flushPending {
			s.flushPending = true
			if err := s.loop.Execute(context.Background(), s.flushFn); err != nil {
				// The engine is stopping: finish here rather than never.
				s.flushPending = false
				s.opts.FlushSlice = time.Hour
				s.flushDirty()
			}
		}
		return
	}
	s.dirty = s.dirty[:0]
	s.dirtyNext = 0
	s.observeFanout()
}

// observeFanout records, once every connection touched by a batch has been written,
// the time from each frame's publication to that moment.
func (s *Shard) observeFanout() {
	if len(s.batch) == 0 {
		return
	}
	wall := time.Now().UnixMicro()
	for i, f := range s.batch {
		if f.TS > 0 && wall >= f.TS {
			s.m.Fanout.Observe(float64(wall-f.TS) / 1e6)
		}
		s.batch[i] = nil
	}
	s.batch = s.batch[:0]
}

func (s *Shard) flushCounts() {
	for p := range s.counts {
		if n := s.counts[p]; n > 0 {
			s.m.delivered(bus.Prio(p), n)
			s.counts[p] = 0
		}
	}
}

// sweepBlocked retries connections waiting for their socket and polices them.
func (s *Shard) sweepBlocked(now int64) {
	if len(s.blocked) == 0 {
		// Nothing waits on a socket: the gauge is our lanes alone (it must not keep the
		// figure of the last sweep that had blocked connections).
		s.m.Pending.Set(float64(s.pending.Load()))
		return
	}
	list := s.blocked
	s.blocked = nil
	var pending int64
	for _, c := range list {
		q := c.out
		if q == nil {
			continue
		}
		q.listed = false
		if c.state != StateOpen {
			if c.state == StateClosed && !q.dirty {
				s.release(q)
			}
			continue
		}
		s.flush(c, now)
		if c.out == q && len(q.state)+len(q.low) == 0 && !q.listed && !q.dirty {
			c.out = nil
			s.release(q)
		}
		if c.state == StateOpen {
			pending += int64(c.gc.OutboundBuffered())
		}
	}
	clear(list)
	if s.blocked == nil {
		s.blocked = list[:0]
	}
	s.flushCounts()
	s.m.Pending.Set(float64(s.pending.Load() + pending))
}

// drainInbox runs on the loop when the bus has posted frames.
func (s *Shard) drainInbox() {
	s.scheduled.Store(false)
	list, lost := s.inbox.take()
	now := s.now()
	for match := range lost {
		s.lostMatch(match, bus.ReasonBus)
	}
	if list != nil {
		if d := now - list.at; d > 0 {
			s.m.DispatchDelay.Observe(float64(d) / 1e9)
			s.noteLag(d)
		}
	}
	shed := time.Duration(s.lag.Load()) > s.opts.ShedLag
	batch := s.batch
	for it := list; it != nil; it = it.next {
		if it.lost != "" {
			s.lostMatch(it.lost, it.reason)
			continue
		}
		f := it.frame
		s.inbox.bytes.Add(-int64(len(f.Bytes)))
		subs := s.index[f.Match]
		if subs == nil {
			continue
		}
		if f.Kind == KindEvent && shed {
			s.m.droppedN(f.Prio, "shed", len(subs.conns))
			continue
		}
		for _, c := range subs.conns {
			s.enqueue(c, f)
		}
		batch = append(batch, f)
	}
	s.batch = batch
	s.flushDirty()
}

// lostMatch queues `resync` for every subscriber of match, dropping their queued deltas
// of it (the resync covers them).
func (s *Shard) lostMatch(match string, reason bus.ResyncReason) {
	subs := s.index[match]
	if subs == nil {
		return
	}
	for _, c := range subs.conns {
		if c.state != StateOpen {
			continue
		}
		q := s.queue(c)
		keep := q.state[:0]
		for _, f := range q.state {
			if f.Kind == KindDelta && f.Match == match {
				q.bytes -= len(f.Bytes)
				s.pending.Add(-int64(len(f.Bytes)))
				s.m.dropped(f.Prio, string(reason))
				continue
			}
			keep = append(keep, f)
		}
		clear(q.state[len(keep):])
		q.state = keep
		if !hasResync(q.state, match) {
			s.enqueue(c, resyncFrame(match, reason))
			s.m.resync(reason)
		} else if reason == bus.ReasonEpoch && s.upgradeResync(q, match) {
			// A delta of a new epoch may follow only a resync that says so (rule 1).
			s.m.resync(reason)
			if !q.dirty {
				q.dirty = true
				s.dirty = append(s.dirty, c)
			}
		} else if !q.dirty {
			q.dirty = true
			s.dirty = append(s.dirty, c)
		}
	}
}

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

// Counts adds this shard's subscriber count per match to dst.
func (s *Shard) Counts(dst map[string]int) {
	for m, subs := range s.index {
		dst[m] += len(subs.conns)
	}
}

// Tick is the loop's periodic work (every ~50ms): retry blocked sockets, pace a drain,
// and once a second of the connection clock sweep the connections (sweepConns).
func (s *Shard) Tick(ping *Frame) {
	now := s.now()
	s.sweepBlocked(now)
	if len(s.linger) > 0 {
		s.sweepLinger(now, false)
	}
	s.tickDrain(now)
	s.flushCounts() // frames written directly (writeNow) since the last tick
	s.ticks++
	if s.ticks%20 == 0 {
		s.trimFree()
	}
	if now := s.connNow(); now >= s.nextSweep {
		s.nextSweep = now.Truncate(time.Second) + time.Second
		s.sweepConns(ping, now)
	}
}

// trimFree gives back the queues nobody took during the last second (about 20 ticks),
// keeping a few: idle connections cost no queue, while a shard that fans out every
// second keeps one per subscriber and allocates nothing per delivery.
func (s *Shard) trimFree() {
	if spare := s.freeLow - minFreeQueues; spare > 0 {
		n := len(s.free) - spare
		clear(s.free[n:])
		s.free = s.free[:n]
	}
	s.freeLow = len(s.free)
}

// ---- drain ----

type drainState struct {
	order    []*Conn
	due      []int64 // shard clock ns when order[i] is closed
	next     int
	deadline int64
}

// StartDrain sends every open connection `reconnect` with after_ms spread evenly over
// window and schedules each close (1012) at its after_ms.
func (s *Shard) StartDrain(window time.Duration, reconnect func(afterMS int64) *Frame) {
	if s.drain != nil {
		return
	}
	now := s.now()
	d := &drainState{}
	for _, c := range s.all {
		if c.state == StateOpen {
			d.order = append(d.order, c)
		}
	}
	n := len(d.order)
	d.due = make([]int64, n)
	for i, c := range d.order {
		after := window * time.Duration(i+1) / time.Duration(n+1)
		d.due[i] = now + int64(after)
		s.enqueue(c, reconnect(after.Milliseconds()))
	}
	s.drain = d
	s.flushDirty()
}

func (s *Shard) tickDrain(now int64) {
	d := s.drain
	if d == nil {
		return
	}
	for d.next < len(d.order) && d.due[d.next] <= now {
		c := d.order[d.next]
		d.order[d.next] = nil
		d.next++
		if c.state == StateOpen {
			s.Close(c, ReasonDrain)
		}
	}
}

// CloseAll closes every connection at once with reason (a second signal, or shutdown).
func (s *Shard) CloseAll(reason CloseReason) {
	s.sweepLinger(0, true)
	for i := len(s.all) - 1; i >= 0; i-- {
		if i < len(s.all) {
			c := s.all[i]
			if c.state == StateHandshake {
				c.reason = ReasonHandshakeRefused
				c.state = StateClosing
				_ = c.gc.Close()
				continue
			}
			s.Close(c, reason)
		}
	}
}

// String identifies the shard in logs.
func (s *Shard) String() string { return fmt.Sprintf("loop-%d", s.idx) }
