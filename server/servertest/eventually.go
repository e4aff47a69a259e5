package servertest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// Eventually polls cond until it returns nil and fails t if it has not within the given
// time, reporting cond's last error (nats-server's checkFor). The wait between polls
// grows from 1 ms to 50 ms, so a condition that holds at once costs nothing and one that
// takes seconds does not spin a core of the shared test machine. It must be called from
// the test's goroutine (it calls t.Fatalf).
func Eventually(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(within, cond); err != nil {
		t.Fatalf("not within %v: %v", within, err)
	}
}

// Cond adapts a condition that has nothing more to say than whether it holds: its
// error, while it does not, names what is awaited. A condition that can say how far it
// got (a count, the last frame) should return its own error instead.
func Cond(what string, holds func() bool) func() error {
	return func() error {
		if holds() {
			return nil
		}
		return errors.New("still waiting for " + what)
	}
}

// Reaches waits up to within until count returns n or more (a seq, deltas applied),
// and fails t with the last count otherwise: what names it ("stored seq" fails with
// "stored seq 12, waiting for 60").
func Reaches(t testing.TB, within time.Duration, what string, n uint64, count func() uint64) {
	t.Helper()
	Eventually(t, within, func() error {
		if got := count(); got < n {
			return fmt.Errorf("%s %d, waiting for %d", what, got, n)
		}
		return nil
	})
}

// Poll is Eventually without the testing.TB, for a test that goes on after a timeout
// (to report more) or waits off the test's goroutine: it returns nil once cond holds,
// or cond's last error when within has passed.
func Poll(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	wait := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if !time.Now().Before(deadline) {
			return err
		}
		if left := time.Until(deadline); wait > left {
			wait = left
		}
		if wait > 0 {
			time.Sleep(wait) // a poll interval, not a synchronisation: cond decides
		}
		if wait *= 2; wait > 50*time.Millisecond {
			wait = 50 * time.Millisecond
		}
	}
}

// Background runs run (a client's Run, a replay) on its own goroutine for the rest of
// the test: at the test's end its context is cancelled and Background waits for it to
// return, so that nothing it does outlives the test.
func Background(t testing.TB, run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}
