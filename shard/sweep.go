package shard

import (
	"time"

	"crease/wire"
)

// sweepConns is the once-a-second pass over every connection of the shard (Tick calls
// it when the connection clock enters a new second; now is that clock): it closes
// handshakes past their deadline (unless their request is waiting unread), connections silent for 3 heartbeats (4000) and those
// whose token expired (Hooks.TokenExpired), and sends the pings of this second.
//
// Pings are spread over the heartbeat by position, so that a shard's connections do not
// all get theirs in the same second.
func (s *Shard) sweepConns(ping *Frame, now time.Duration) {
	hb := int64(s.opts.Heartbeat / time.Second)
	slot := int32(int64(now/time.Second) % hb)
	q := uint16(now / quarter)
	us := uint32(now / time.Microsecond)
	idle := quartersOver(3 * s.opts.Heartbeat)
	handshake := quartersOver(s.opts.HandshakeTimeout)
	wallMS := s.opts.Now().UnixMilli()
	for i := len(s.all) - 1; i >= 0; i-- {
		if i >= len(s.all) {
			continue // a close inside this pass removed more than one entry
		}
		c := s.all[i]
		switch c.state {
		case StateHandshake:
			if q-c.seen >= handshake {
				if q-c.seen < 2*handshake && s.unread(c.gc) > 0 {
					// The client sent its request and the loop has not read it yet: the
					// host is late (a ramp on saturated cores), not the client. It gets up
					// to one more timeout to be read; a slowloris, whose bytes a loop in
					// time has read already, does not.
					continue
				}
				c.reason = wire.ReasonHandshakeTimeout
				c.state = StateClosing
				_ = c.gc.Close()
			}
		case StateOpen:
			if q-c.seen >= idle {
				s.Close(c, wire.ReasonIdle)
				continue
			}
			if c.expired(wallMS) {
				if s.hooks.TokenExpired != nil {
					s.hooks.TokenExpired(c)
				}
				if c.state == StateOpen {
					s.Close(c, wire.ReasonTokenExpired)
				}
				continue
			}
			s.normaliseOps(c, us)
			if ping != nil && int64(c.pos)%hb == int64(slot) {
				if c.out == nil && c.gc.OutboundBuffered() == 0 {
					s.writeNow(c, ping)
				} else {
					s.enqueue(c, ping)
				}
			}
		}
	}
	s.flushDirty()
}

// Sweep runs sweepConns now, whatever the time: for tests that move Options.Now and
// need the sweep at that time to have run.
func (s *Shard) Sweep(ping *Frame) { s.sweepConns(ping, s.connNow()) }
