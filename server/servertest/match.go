package servertest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"crease/bus"
	"crease/ingest"
	"crease/internal/livefeed"
)

// MatchFile returns the embedded Cricsheet file of the real match id (1298150, 1359539
// or 335982, as ingest/matches holds them); another id fails t.
func MatchFile(t testing.TB, id string) []byte {
	t.Helper()
	data, err := ingest.EmbeddedFile(id)
	if err != nil {
		t.Fatalf("match file %s: %v", id, err)
	}
	return data
}

// LiveFeed is the real match id as a score provider posts it (livefeed.FromFile of its
// file).
func LiveFeed(t testing.TB, id string) livefeed.Feed {
	t.Helper()
	f, err := livefeed.FromFile(MatchFile(t, id))
	if err != nil {
		t.Fatalf("match %s: %v", id, err)
	}
	return f
}

// RealMatch returns the first embedded real match (1298150, Pakistan v India, T20
// World Cup 2022); no embedded match fails t.
func RealMatch(t testing.TB) *ingest.Match {
	t.Helper()
	ms, err := ingest.Embedded()
	if err != nil || len(ms) == 0 {
		t.Fatalf("embedded matches: %v (%d)", err, len(ms))
	}
	return ms[0]
}

// ShortestMatch returns the embedded real match of the fewest steps (a T20).
func ShortestMatch(t testing.TB) *ingest.Match {
	t.Helper()
	ms, err := ingest.Embedded()
	if err != nil || len(ms) == 0 {
		t.Fatalf("embedded matches: %v (%d)", err, len(ms))
	}
	best := ms[0]
	for _, m := range ms[1:] {
		if m.Steps() < best.Steps() {
			best = m
		}
	}
	return best
}

// Replay publishes m on pub at speed deltas per second in the background, looping with
// a second's pause, until stop is called or the test ends. stop waits for the replay
// and returns its error: nil when stop ended it (calling stop again returns the same).
func Replay(t testing.TB, pub bus.Publisher, m *ingest.Match, speed float64) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- ingest.Replay(ctx, pub, m, ingest.ReplayOptions{Speed: speed, Loop: true, LoopPause: time.Second})
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-errc
			if errors.Is(err, context.Canceled) {
				err = nil
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
