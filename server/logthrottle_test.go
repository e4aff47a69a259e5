package server

import (
	"testing"
	"time"
)

// One line per interval gets through, and it says how many it stands for.
func TestLogThrottle(t *testing.T) {
	th := logThrottle{interval: 10 * time.Second}
	t0 := time.Unix(1_000_000, 0)
	for _, c := range []struct {
		at   time.Duration
		ok   bool
		held int64
	}{{0, true, 0}, {time.Second, false, 0}, {9 * time.Second, false, 0}, {10 * time.Second, true, 2}, {11 * time.Second, false, 0}, {time.Minute, true, 1}} {
		ok, held := th.allow(t0.Add(c.at))
		if ok != c.ok || held != c.held {
			t.Errorf("at +%v: allow = %v, %d held; want %v, %d", c.at, ok, held, c.ok, c.held)
		}
	}
}
