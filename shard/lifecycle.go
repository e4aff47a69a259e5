package shard

import (
	"time"

	"github.com/panjf2000/gnet/v2"

	"crease/codec"
	"crease/wire"
)

// Lifecycle: a connection from its accept (Open) through the upgrade to its close
// (Close, Closed), the loop's periodic work (Tick) and the gateway's drain and shutdown.
// All of it runs on the loop.

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
	c.reason = wire.ReasonHandshakeRefused
	c.state = StateClosing
	_ = c.gc.Close()
}

// Close ends c for reason: queued state frames are written (unless c is being cut as a
// slow consumer), then the close frame, then gnet closes the socket; a slow consumer's
// socket lingers first (Options.CloseLinger, sweepLinger). gnet writes what it holds
// before closing, so no frame is cut in half by us.
func (s *Shard) Close(c *Conn, reason wire.CloseReason) {
	if c.state >= StateClosing {
		return
	}
	wasOpen := c.state == StateOpen
	c.reason = reason
	if wasOpen {
		if q := c.out; q != nil {
			s.dropLow(q, "")
			if reason == wire.ReasonSlow {
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
	if reason == wire.ReasonSlow && wasOpen {
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
	wasUpgraded := c.state == StateOpen || (c.state == StateClosing && c.reason != wire.ReasonHandshakeTimeout && c.reason != wire.ReasonHandshakeRefused)
	if c.state == StateOpen {
		c.reason = wire.ReasonPeer
	}
	c.state = StateClosed
	s.leaveAll(c)
	s.forgetCatchUp(c)
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
	// Every end the gateway chose is reported, a refused or timed-out handshake too
	// (crease_disconnects_total); a peer gone before its upgrade is nobody's.
	if (wasUpgraded || c.reason == wire.ReasonHandshakeTimeout || c.reason == wire.ReasonHandshakeRefused) && s.hooks.Closed != nil {
		s.hooks.Closed(c, c.reason)
	}
	c.gc = nil
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
	s.sweepRecoveries(now)
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

type drainState struct {
	order    []*Conn
	due      []int64 // shard clock ns when order[i] is closed
	next     int
	deadline int64
}

// StartDrain sends every open connection `reconnect` with after_ms spread evenly over
// window and schedules each close (1012) at its after_ms.
func (s *Shard) StartDrain(window time.Duration) { s.StartDrainAfter(0, window, window) }

// StartDrainAfter sends every open connection `reconnect` with after_ms spread evenly
// over [gap, gap+window] and closes (1012) them spread evenly over closeWithin: a
// gateway restarting in place lets its clients go at once and tells them to come back
// once its successor listens. Connection i of n gets after_ms gap + window·(i+1)/(n+1)
// and its close at closeWithin·(i+1)/(n+1).
func (s *Shard) StartDrainAfter(gap, window, closeWithin time.Duration) {
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
	n := time.Duration(len(d.order))
	d.due = make([]int64, n)
	for i, c := range d.order {
		k := time.Duration(i + 1)
		d.due[i] = now + int64(closeWithin*k/(n+1))
		s.enqueue(c, ControlText(wire.Reconnect(gap+window*k/(n+1))))
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
			s.Close(c, wire.ReasonDrain)
		}
	}
}

// CloseAll closes every connection at once with reason (a second signal, or shutdown).
func (s *Shard) CloseAll(reason wire.CloseReason) {
	s.sweepLinger(0, true)
	for i := len(s.all) - 1; i >= 0; i-- {
		if i < len(s.all) {
			c := s.all[i]
			if c.state == StateHandshake {
				c.reason = wire.ReasonHandshakeRefused
				c.state = StateClosing
				_ = c.gc.Close()
				continue
			}
			s.Close(c, reason)
		}
	}
}
