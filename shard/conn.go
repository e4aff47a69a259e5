package shard

import (
	"github.com/panjf2000/gnet/v2"

	"crease/codec"
)

// Connection states.
const (
	StateHandshake uint8 = iota // waiting for the HTTP upgrade
	StateOpen                   // upgraded: frames flow
	StateClosing                // a close was decided; nothing more is written
	StateClosed                 // gnet closed it; the value is dead
)

// Conn is the gateway's state for one connection. It is kept small on purpose: at tens of
// thousands of connections per loop every word counts, and an idle connection holds no
// buffers (its outbound queue exists only while something is queued, and the frame
// reader holds a buffer only while a fragmented message is being assembled).
type Conn struct {
	gc     gnet.Conn
	out    *outQueue
	subs   []subRef
	Reader codec.Reader // client frame parser, used by the server on this loop
	Allow  []string     // matches a token allows; nil: any
	pos    int32        // index in Shard.conns
	seen   int32        // shard clock, seconds, of the last bytes received
	born   int32        // shard clock, seconds, at open (handshake deadline)
	ops    int16        // client-op tokens left in the current second
	opsAt  int32        // shard clock second the op tokens belong to
	state  uint8
	reason CloseReason
}

// State returns the connection state.
func (c *Conn) State() uint8 { return c.state }

// Net returns the gnet connection. It must not be used once State is StateClosed.
func (c *Conn) Net() gnet.Conn { return c.gc }

// Subscriptions returns how many matches c is subscribed to.
func (c *Conn) Subscriptions() int { return len(c.subs) }

// Subscribed reports whether c is subscribed to match.
func (c *Conn) Subscribed(match string) bool {
	for _, r := range c.subs {
		if r.s.match == match {
			return true
		}
	}
	return false
}

// outQueue is what is queued for one connection beyond what gnet holds: references to
// shared frames in two lanes. The state lane (deltas, resync markers, control frames) is
// always written before the low lane (events), so a high delta never waits behind
// commentary.
type outQueue struct {
	state        []*Frame
	low          []*Frame
	bytes        int   // bytes in both lanes
	blockedSince int64 // shard clock ns when the socket was first found full; 0 if not
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
	q.listed = false
	q.dirty = false
}

// Subscribers is the set of a shard's connections subscribed to one match. Removal is
// O(1): each connection remembers its position here.
type Subscribers struct {
	match string
	conns []*Conn
}

type subRef struct {
	s   *Subscribers
	pos int32
}
