package shard

import (
	"github.com/panjf2000/gnet/v2"

	"crease/codec"
	"crease/wire"
)

// ConnState is where a connection is in its life; it only moves forward.
type ConnState uint8

// Connection states.
const (
	StateHandshake ConnState = iota // waiting for the HTTP upgrade
	StateOpen                       // upgraded: frames flow
	StateClosing                    // a close was decided; nothing more is written
	StateClosed                     // gnet closed it; the value is dead
)

// Conn is the gateway's state for one connection. It is kept to 64 bytes on purpose: at
// tens of thousands of connections per loop every word counts. An idle connection holds
// no buffers (its outbound queue exists only while something is queued, and the frame
// reader holds a buffer only while a fragmented message is being assembled), its first
// subscription is inline, and what few connections need (more subscriptions, a token's
// match list) lives behind ext.
type Conn struct {
	gc     gnet.Conn
	out    *outQueue
	sub0   *Subscribers // first subscription, nil if none
	ext    *connExt     // rare state, nil if none
	Reader codec.Reader // client frame parser, used by the server on this loop
	pos    int32        // index in Shard.all
	pos0   int32        // index of c in sub0.conns
	tat    uint32       // op bucket: connection clock µs (mod 2^32) of the next op at the sustained rate (oprate.go)
	seen   uint16       // connection clock quarter seconds (mod 2^16) of the last bytes received; open time during the handshake
	state  ConnState
	reason wire.CloseReason
}

// connExt is the state only some connections need.
type connExt struct {
	more  []subRef // subscriptions beyond the first
	allow []string // matches a token allows; nil: any
	exp   int64    // the token's expiry, Unix ms of Options.Now; 0: none (token.go)
}

// empty reports whether nothing is left in e.
func (e *connExt) empty() bool { return e.more == nil && e.allow == nil && e.exp == 0 }

// State returns the connection state.
func (c *Conn) State() ConnState { return c.state }

// Net returns the gnet connection. It must not be used once State is StateClosed.
func (c *Conn) Net() gnet.Conn { return c.gc }

// Allowed reports whether c may subscribe to match.
func (c *Conn) Allowed(match string) bool {
	if c.ext == nil || c.ext.allow == nil {
		return true
	}
	for _, m := range c.ext.allow {
		if m == match {
			return true
		}
	}
	return false
}

// Subscriptions returns how many matches c is subscribed to.
func (c *Conn) Subscriptions() int {
	n := 0
	if c.sub0 != nil {
		n = 1
	}
	if c.ext != nil {
		n += len(c.ext.more)
	}
	return n
}

// Matches returns the matches c is subscribed to, in no particular order.
func (c *Conn) Matches() []string {
	var out []string
	c.eachSub(func(r subRef) { out = append(out, r.s.match) })
	return out
}

// Subscribed reports whether c is subscribed to match.
func (c *Conn) Subscribed(match string) bool {
	return c.findSub(match) >= 0
}

// findSub returns the position of match among c's subscriptions (0 is sub0, i+1 is
// ext.more[i]), or -1.
func (c *Conn) findSub(match string) int {
	if c.sub0 != nil && c.sub0.match == match {
		return 0
	}
	if c.ext != nil {
		for i, r := range c.ext.more {
			if r.s.match == match {
				return i + 1
			}
		}
	}
	return -1
}

// sub returns subscription i (see findSub).
func (c *Conn) sub(i int) subRef {
	if i == 0 {
		return subRef{s: c.sub0, pos: c.pos0}
	}
	return c.ext.more[i-1]
}

// addSub records a subscription.
func (c *Conn) addSub(r subRef) {
	if c.sub0 == nil {
		c.sub0, c.pos0 = r.s, r.pos
		return
	}
	if c.ext == nil {
		c.ext = &connExt{}
	}
	c.ext.more = append(c.ext.more, r)
}

// removeSub forgets subscription i, moving the last one into its place.
func (c *Conn) removeSub(i int) {
	var more []subRef
	if c.ext != nil {
		more = c.ext.more
	}
	last := len(more)
	if last == 0 {
		c.sub0, c.pos0 = nil, 0
		return
	}
	r := more[last-1]
	if i == 0 {
		c.sub0, c.pos0 = r.s, r.pos
	} else {
		more[i-1] = r
	}
	more[last-1] = subRef{}
	c.ext.more = more[:last-1]
	if len(c.ext.more) == 0 {
		c.ext.more = nil
		if c.ext.empty() {
			c.ext = nil
		}
	}
}

// setSubPos updates where c sits in subs' list.
func (c *Conn) setSubPos(subs *Subscribers, pos int32) {
	if c.sub0 == subs {
		c.pos0 = pos
		return
	}
	for i := range c.ext.more {
		if c.ext.more[i].s == subs {
			c.ext.more[i].pos = pos
			return
		}
	}
}

// eachSub calls fn for every subscription of c.
func (c *Conn) eachSub(fn func(subRef)) {
	if c.sub0 != nil {
		fn(subRef{s: c.sub0, pos: c.pos0})
	}
	if c.ext != nil {
		for _, r := range c.ext.more {
			fn(r)
		}
	}
}
