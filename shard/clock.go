package shard

import "time"

// The shard clock: Options.Now measured from the shard's creation. Every time the shard
// reads goes through it, as centrifuge's internal/nowtime does for its tests, so that a
// test moves time instead of waiting: what the protocol promises a client (heartbeats,
// the idle close, the handshake deadline, the op bucket, token expiry, the drain's
// after_ms) and the loop's own timing (lag, dispatch delay, flush slices, stalls, cuts,
// lingers, the fan-out latency) alike.
//
// A connection keeps two stamps of it, small on purpose (Conn is 64 bytes): the last
// bytes received in quarter seconds (16 bits: unambiguous over 4.5 hours, which
// MaxHeartbeat and MaxHandshakeTimeout respect) and the op bucket in microseconds (32
// bits: 71 minutes, kept near the clock by every sweep, see normaliseOps).

// quarter is the resolution of Conn.seen.
const quarter = 250 * time.Millisecond

// now returns the shard clock in ns: the time since the shard was created. Any
// goroutine may call it (Post stamps the inbox with it).
func (s *Shard) now() int64 { return int64(s.connNow()) }

// connNow returns the shard clock as a Duration.
func (s *Shard) connNow() time.Duration { return s.opts.Now().Sub(s.epoch) }

// quarters returns the connection clock in quarter seconds, mod 2^16.
func (s *Shard) quarters() uint16 { return uint16(s.connNow() / quarter) }

// micros returns the connection clock in microseconds, mod 2^32.
func (s *Shard) micros() uint32 { return uint32(s.connNow() / time.Microsecond) }

// quartersOver returns the smallest count of whole quarters between two stamps that
// proves at least d has passed: the stamps are truncated, so one quarter more than d.
func quartersOver(d time.Duration) uint16 {
	return uint16((d+quarter-1)/quarter) + 1
}
