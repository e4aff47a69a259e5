package shard

import "time"

// The per-connection op bucket is GCRA (the virtual-scheduling form of a token bucket):
// one stamp per connection, Conn.tat, the theoretical arrival time of the next op at
// the sustained rate. An op is allowed while tat is at most (OpBurst-1) intervals
// ahead of the clock. A refused op moves tat on too, so a client that ignores
// `rate_limited` digs itself deeper and is closed once tat runs another OpBurst
// intervals ahead: a flood, where a burst of up to 2 x OpBurst ops at once only gets
// errors for the excess. A client that waits 1/OpRate per refused op is never closed.

// OpResult is the outcome of AllowOp.
type OpResult uint8

// AllowOp outcomes.
const (
	OpOK      OpResult = iota
	OpRefused          // over the rate: answer `error` rate_limited
	OpFlood            // far over the rate after refusals: close with 1008
)

// opBucket is the op bucket's configuration in connection-clock microseconds.
type opBucket struct {
	interval uint32 // 1/OpRate
	tau      uint32 // (OpBurst-1) intervals: how far ahead tat may be for an op to pass
	flood    uint32 // tau + OpBurst intervals: past it the connection floods
}

func newOpBucket(rate float64, burst int) opBucket {
	iv := uint32(max(1, time.Duration(float64(time.Second)/rate)/time.Microsecond))
	return opBucket{interval: iv, tau: uint32(burst-1) * iv, flood: uint32(2*burst-1) * iv}
}

// AllowOp spends one op of c's bucket.
func (s *Shard) AllowOp(c *Conn) OpResult {
	now := s.micros()
	tat := c.tat
	if int32(tat-now) < 0 {
		tat = now
	}
	ahead := tat - now
	c.tat = tat + s.ops.interval
	switch {
	case ahead <= s.ops.tau:
		return OpOK
	case ahead+s.ops.interval <= s.ops.flood:
		return OpRefused
	}
	return OpFlood
}

// normaliseOps keeps c.tat within 32 bits of the clock: a stamp left behind by an idle
// connection is moved up to now (which changes nothing: a tat in the past allows a full
// burst either way) before the clock can wrap around it. The sweep calls it every
// second.
func (s *Shard) normaliseOps(c *Conn, now uint32) {
	if int32(c.tat-now) < 0 {
		c.tat = now
	}
}
