package shard

import "crease/wire"

// Subscriptions: the shard's match -> Subscribers index and each connection's side of
// it, kept consistent in O(1) per change. All of it runs on the loop.

// Subscribers is the set of a shard's connections subscribed to one match. Removal is
// O(1): each connection remembers its position here.
type Subscribers struct {
	match      string
	conns      []*Conn
	subscribed *Frame    // the match's `subscribed` answer, built on first use
	feed       matchFeed // the last seq drained and the subscriptions waiting for a replay (recover.go)
}

type subRef struct {
	s   *Subscribers
	pos int32 // index in s.conns; -(i+1) while pending at s.feed.pending[i] (recover.go)
}

// SubResult is the outcome of Subscribe.
type SubResult uint8

// Subscribe outcomes.
const (
	SubAdded SubResult = iota
	SubAlready
	SubTooMany
)

// Subscribe adds c to match's subscribers.
func (s *Shard) Subscribe(c *Conn, match string) SubResult {
	if c.Subscribed(match) {
		return SubAlready
	}
	if c.Subscriptions() >= s.opts.MaxSubscriptions {
		return SubTooMany
	}
	subs := s.subscribersOf(match)
	c.addSub(subRef{s: subs, pos: int32(len(subs.conns))})
	subs.conns = append(subs.conns, c)
	s.m.Subscriptions.Inc()
	return SubAdded
}

// subscribersOf returns the Subscribers of match, made (and interest declared) if none.
func (s *Shard) subscribersOf(match string) *Subscribers {
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
	return subs
}

// SubscribedFrame returns the `subscribed` answer for match. While the shard has
// subscribers of match it is built once and shared by all of them, like every other
// frame.
func (s *Shard) SubscribedFrame(match string) *Frame {
	subs := s.index[match]
	if subs == nil {
		return ControlText(wire.Subscribed(match))
	}
	if subs.subscribed == nil {
		subs.subscribed = ControlText(wire.Subscribed(match))
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
	if r.pos < 0 {
		s.dropPending(subs, int(-r.pos-1)) // waiting for its replay (recover.go)
	} else {
		last := len(subs.conns) - 1
		moved := subs.conns[last]
		subs.conns[r.pos] = moved
		subs.conns[last] = nil
		subs.conns = subs.conns[:last]
		if moved != c {
			moved.setSubPos(subs, r.pos)
		}
	}
	s.m.Subscriptions.Dec()
	if len(subs.conns) == 0 && len(subs.feed.pending) == 0 {
		delete(s.index, subs.match)
		if s.hooks.Interest != nil {
			s.hooks.Interest(s.idx, subs.match, false)
		}
	}
}

// dropQueued removes queued frames of match after an unsubscribe: deltas, events and
// resync markers; the connection's own control frames stay.
func (s *Shard) dropQueued(c *Conn, match string) {
	if q := c.out; q != nil {
		s.removeFrames(q, func(f *Frame) bool { return f.Match == match && f.Kind != KindControl })
	}
}

// Counts adds this shard's subscriber count per match to dst.
func (s *Shard) Counts(dst map[string]int) {
	for m, subs := range s.index {
		dst[m] += len(subs.conns) + len(subs.feed.pending)
	}
}
