package shard

import "time"

// The connection clock: Options.Now measured from the shard's creation. It times what
// the protocol promises a client (heartbeats, the idle close, the handshake deadline,
// the op bucket, token expiry); the loop's own timing uses the real clock (Shard.now).
//
// A connection keeps two stamps of it, small on purpose (Conn is 64 bytes): the last
// bytes received in quarter seconds (16 bits: unambiguous over 4.5 hours, which
// MaxHeartbeat and MaxHandshakeTimeout respect) and the op bucket in microseconds (32
// bits: 71 minutes, kept near the clock by every sweep, see normaliseOps).

// quarter is the resolution of Conn.seen.
const quarter = 250 * time.Millisecond

// connNow returns the connection clock: the time since the shard was created.
func (s *Shard) connNow() time.Duration { return s.opts.Now().Sub(s.connEpoch) }

// quarters returns the connection clock in quarter seconds, mod 2^16.
func (s *Shard) quarters() uint16 { return uint16(s.connNow() / quarter) }

// micros returns the connection clock in microseconds, mod 2^32.
func (s *Shard) micros() uint32 { return uint32(s.connNow() / time.Microsecond) }

// quartersOver returns the smallest count of whole quarters between two stamps that
// proves at least d has passed: the stamps are truncated, so one quarter more than d.
func quartersOver(d time.Duration) uint16 {
	return uint16((d+quarter-1)/quarter) + 1
}
