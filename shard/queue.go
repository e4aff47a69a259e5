package shard

import (
	"time"

	"crease/bus"
	"crease/wire"
)

// Queue and budget: each connection's two outbound lanes, written in slices no larger
// than the Budget, and the OutboundBudget policy (events dropped over the soft
// watermark, deltas shed for a resync, the cut) applied when its socket is full. All of
// it runs on the loop.

// outQueue is what is queued for one connection beyond what gnet holds: references to
// shared frames in two lanes. The state lane (deltas, resync markers, control frames) is
// always written before the low lane (events), so a high delta never waits behind
// commentary.
type outQueue struct {
	state        []*Frame
	low          []*Frame
	bytes        int   // bytes in both lanes
	blockedSince int64 // shard clock ns when the socket was first found full; 0 if not
	catchUpTick  int64 // Shard.ticks+1 of the last catch-up composition (catchup.go); 0 none
	listed       bool  // on Shard.blocked
	dirty        bool  // on Shard.dirty
}

func (q *outQueue) reset() {
	clear(q.state)
	clear(q.low)
	q.state = q.state[:0]
	q.low = q.low[:0]
	q.bytes = 0
	q.blockedSince = 0
	q.catchUpTick = 0
	q.listed = false
	q.dirty = false
}

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
		q.blockedSince = max(now, 1) // 0 means not blocked; the shard clock starts at 0
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
	if f.Kind == KindControl || f.Kind == KindResync {
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
		s.Close(c, wire.ReasonSlow)
		return false
	}
	if total > s.opts.Budget || blocked >= s.opts.StallLimit {
		s.shedDeltas(c, q, bus.ReasonSlow)
	}
	return true
}

// removeFrames removes from both of q's lanes the frames for which drop returns true,
// keeping the order of the others and the lanes' arrays; what it removes leaves q's and
// the shard's byte counts. drop is called once per frame, state lane first, so it may
// count what it drops.
func (s *Shard) removeFrames(q *outQueue, drop func(*Frame) bool) {
	q.state = s.removeFromLane(q, q.state, drop)
	q.low = s.removeFromLane(q, q.low, drop)
}

func (s *Shard) removeFromLane(q *outQueue, lane []*Frame, drop func(*Frame) bool) []*Frame {
	keep := lane[:0]
	for _, f := range lane {
		if drop(f) {
			q.bytes -= len(f.Bytes)
			s.pending.Add(-int64(len(f.Bytes)))
			continue
		}
		keep = append(keep, f)
	}
	clear(lane[len(keep):])
	return keep
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

// shedDeltas replaces every queued delta of c by one resync marker per match (for a
// connection that opted in, every match's deltas it can compose by one catch-up delta
// first: catchup.go).
func (s *Shard) shedDeltas(c *Conn, q *outQueue, reason bus.ResyncReason) {
	if s.cu.conns != nil && s.CatchUp(c) && !s.catchUpQueued(q) {
		return
	}
	var shed []string
	s.removeFrames(q, func(f *Frame) bool {
		if f.Kind != KindDelta {
			return false
		}
		s.m.dropped(f.Prio, string(reason))
		if !contains(shed, f.Match) {
			shed = append(shed, f.Match)
		}
		return true
	})
	keep := q.state
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

// flushListed flushes c, just taken off the dirty or the blocked list (that flag of q,
// its queue, cleared), and gives q back once it is on neither list and empty, or its
// connection is gone.
func (s *Shard) flushListed(c *Conn, q *outQueue, now int64) {
	if c.state != StateOpen {
		if c.state == StateClosed && !q.dirty && !q.listed {
			s.release(q)
		}
		return
	}
	s.flush(c, now)
	if c.out == q && len(q.state)+len(q.low) == 0 && !q.listed && !q.dirty {
		c.out = nil
		s.release(q)
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
		s.flushListed(c, q, now)
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
