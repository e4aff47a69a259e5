package servertest

import (
	"sync"
	"time"
)

// Clock is a settable clock for shard.Options.Now, the clock of a gateway's connection
// timers (heartbeats, the idle close, the handshake deadline, the op bucket, token
// expiry): a test moves it instead of waiting. The gateway's loops sweep their
// connections at most 50 ms after the clock enters a new second, so a condition that
// follows an Advance is waited for with Eventually. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock standing at the current time.
func NewClock() *Clock { return NewClockAt(time.Now()) }

// NewClockAt returns a Clock standing at t.
func NewClockAt(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
