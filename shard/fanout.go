package shard

import (
	"context"
	"time"

	"crease/bus"
)

// Fan-out: bus frames posted from any goroutine (Post, PostLost) into the loop's inbox,
// and on the loop each frame queued on every subscriber and the touched connections
// flushed in slices (flushDirty).

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
		if it.hist != nil {
			s.historyAnswered(it.hist)
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
		s.noteDelivered(subs, f)
		batch = append(batch, f)
	}
	s.batch = batch
	s.flushDirty()
}

// lostMatch queues `resync` for every subscriber of match, dropping their queued deltas
// of it (the resync covers them); a subscription waiting for its replay asks again.
func (s *Shard) lostMatch(match string, reason bus.ResyncReason) {
	subs := s.index[match]
	if subs == nil {
		return
	}
	for _, c := range subs.conns {
		s.resyncConn(c, match, reason)
	}
	s.noteLost(subs, reason)
}

// resyncConn queues `resync` of match for c, dropping its queued deltas of it.
func (s *Shard) resyncConn(c *Conn, match string, reason bus.ResyncReason) {
	if c.state != StateOpen {
		return
	}
	q := s.queue(c)
	s.removeFrames(q, func(f *Frame) bool {
		if isDelta(f) && f.Match == match {
			s.m.dropped(f.Prio, string(reason))
			return true
		}
		return false
	})
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
	i := s.dirtyNext
	for ; i < len(s.dirty); i++ {
		if i > s.dirtyNext && (i-s.dirtyNext)&31 == 0 && time.Duration(s.now()-now) > s.opts.FlushSlice {
			break
		}
		c := s.dirty[i]
		s.dirty[i] = nil
		q := c.out
		if q == nil {
			continue
		}
		q.dirty = false
		s.flushListed(c, q, now)
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
	wall := s.opts.Now().UnixMicro()
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

// Greet writes a just upgraded connection's first bytes in one write: head (the 101
// answer) and then frames (hello, subscribed, errors), which count as delivered. frames
// are appended to head's array, which is returned emptied for the next handshake.
func (s *Shard) Greet(c *Conn, head []byte, frames []*Frame) []byte {
	if c.state != StateOpen || c.out != nil {
		// Not the fresh connection Greet is for: keep the order through the queue.
		_, _ = c.gc.Write(head)
		for _, f := range frames {
			s.Send(c, f)
		}
		return head[:0]
	}
	b := head
	for _, f := range frames {
		b = append(b, f.Bytes...)
		s.counts[countIndex(f)]++
	}
	_, _ = c.gc.Write(b) // gnet copies what the socket does not take
	return b[:0]
}

// writeNow writes one frame to an idle connection. A failed write closes c inside Write.
func (s *Shard) writeNow(c *Conn, f *Frame) {
	s.counts[countIndex(f)]++
	_, _ = c.gc.Write(f.Bytes)
}
